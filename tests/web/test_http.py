"""Every endpoint through httpx's ASGI transport (no network).

httpx's ASGI transport hands back a response only once the application has
finished it, so the SSE tests here end their streams by closing the bus
(which ends every stream after its queued events). Timing-sensitive SSE
behaviour (heartbeats, disconnects, live resume) is in ``test_sse.py``
against a real server.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import httpx
import pytest
from starlette.applications import Starlette

from atlas_events import EventBus, EventType
from atlas_events.middleware import Redact
from atlas_events.web import TOKEN_COOKIE, create_app

from .conftest import Message, async_wait_until, events_of, parse_sse

BASE = "http://testserver"


class Probe(enum.Enum):
    PING = "probe.ping"
    PONG = "probe.pong"


@attrs.frozen
class Credentials:
    user: str
    password: str


@pytest.fixture
def big_bus() -> Iterator[EventBus]:
    """A bus with room for 5000 events of history."""
    b = EventBus(history_limit=5000, name="web-test")
    yield b
    b.close()


def client_for(app: Starlette, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, **kw)


async def sse(
    app: Starlette,
    bus: EventBus,
    url: str,
    *,
    during: Callable[[], Awaitable[None]] | None = None,
    headers: dict[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
) -> tuple[httpx.Response, list[Message]]:
    """GET an SSE url, run ``during`` once the stream is attached, close the bus, parse."""
    hub = app.state.dashboard
    own = client is None
    c = client or client_for(app)
    try:
        before = hub.connections
        task = asyncio.create_task(c.get(url, headers=headers))
        await async_wait_until(
            lambda: hub.connections > before or task.done(), what="the SSE request"
        )
        if task.done():  # refused (400/401/503)
            resp = task.result()
            return resp, parse_sse(resp.text) if resp.status_code == 200 else []
        await async_wait_until(lambda: len(hub.streams) > 0 or task.done(), what="the stream")
        if during is not None:
            await during()
        await asyncio.sleep(0.01)
        bus.close()
        resp = await asyncio.wait_for(task, 5)
    finally:
        if own:
            await c.aclose()
    return resp, parse_sse(resp.text)


def resume_from(app: Starlette, seq: int) -> dict[str, str]:
    """A ``Last-Event-ID`` header naming this app's bus incarnation and ``seq``."""
    return {"Last-Event-ID": f"{app.state.dashboard.incarnation}:{seq}"}


def publish(
    bus: EventBus, n: int, event_type: enum.Enum = EventType.TASK_STARTED, **kw: Any
) -> None:
    for i in range(n):
        bus.publish(event_type, {"i": i}, **kw)


# ---------------------------------------------------------------------- /events


@pytest.mark.asyncio
async def test_events_stream_format(bus: EventBus) -> None:
    """Each event is one message: id = seq, event = type name, data = the event's JSON."""
    app = create_app(bus)

    async def during() -> None:
        bus.publish(EventType.TASK_STARTED, {"task": "a"}, source="s")
        bus.publish(Probe.PING, None)

    resp, messages = await sse(app, bus, "/events", during=during)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-store"
    assert messages[0].retry == 2000
    hello = messages[0]
    assert hello.event == "hello"
    assert hello.id is None
    assert hello.data["bus"] == "test-root"
    assert hello.data["replayed"] == 0
    evs = events_of(messages)
    assert [(m.id, m.event) for m in evs] == [("1", "EventType.TASK_STARTED"), ("2", "Probe.PING")]
    assert evs[0].data["data"] == {"task": "a"}
    assert evs[0].data["source"] == "s"
    assert evs[1].data["data"] is None


@pytest.mark.asyncio
async def test_events_filters() -> None:
    """type (any spelling, repeatable, comma-separated), scope prefix and correlation id."""
    cases = {
        "/events?type=EventType.TASK_STARTED": [1, 2],
        "/events?type=TASK_STARTED&type=probe.ping": [1, 2, 4],
        "/events?type=Probe.PING,Probe.PONG": [4, 5],
        "/events?scope=agents": [1, 2, 5],
        "/events?scope=/agents/planner/": [1, 5],
        "/events?correlation_id=run-1": [1, 3, 5],
        "/events?source=tool": [3],
        "/events?scope=agents&correlation_id=run-1&type=Probe.PONG": [5],
    }
    for url, expected in cases.items():
        bus = EventBus()
        planner = bus.scope("agents").scope("planner")
        coder = bus.scope("agents").scope("coder")
        tools = bus.scope("tools")

        async def during() -> None:
            planner.publish(EventType.TASK_STARTED, 1, correlation_id="run-1")  # noqa: B023
            coder.publish(EventType.TASK_STARTED, 2, correlation_id="run-2")  # noqa: B023
            tools.publish(EventType.TASK_COMPLETED, 3, correlation_id="run-1", source="tool")  # noqa: B023
            bus.publish(Probe.PING, 4)  # noqa: B023
            planner.publish(Probe.PONG, 5, correlation_id="run-1")  # noqa: B023

        app = create_app(bus, event_types=[Probe])
        _, messages = await sse(app, bus, url, during=during)
        assert [m.data["data"] for m in events_of(messages)] == expected, url


def history_bus(n: int) -> EventBus:
    """A fresh bus holding ``n`` TASK_STARTED events."""
    bus = EventBus(history_limit=5000)
    publish(bus, n)
    return bus


@pytest.mark.asyncio
async def test_replay_recent_history() -> None:
    """``replay=N`` sends the last N matching events first, then live ones, no duplicate."""
    bus = history_bus(30)

    async def during() -> None:
        publish(bus, 2, Probe.PING)

    _, messages = await sse(create_app(bus), bus, "/events?replay=5", during=during)
    assert [m.seq for m in events_of(messages)] == [26, 27, 28, 29, 30, 31, 32]
    hello = next(m for m in messages if m.event == "hello")
    assert hello.data["replayed"] == 5
    bus = history_bus(30)
    _, messages = await sse(create_app(bus), bus, "/events?replay=500")
    assert [m.seq for m in events_of(messages)] == list(range(1, 31))  # fewer held: all
    bus = history_bus(30)
    publish(bus, 2, Probe.PING)
    _, messages = await sse(create_app(bus), bus, "/events?replay=all&type=Probe.PING")
    assert [m.seq for m in events_of(messages)] == [31, 32]


@pytest.mark.asyncio
async def test_last_event_id_resumes_without_gap_or_duplicate() -> None:
    """Last-Event-ID replays exactly what came after it, then goes live."""
    bus = history_bus(20)

    async def during() -> None:
        publish(bus, 5)

    app = create_app(bus)
    _, messages = await sse(app, bus, "/events", headers=resume_from(app, 12), during=during)
    assert [m.seq for m in events_of(messages)] == list(range(13, 26))
    assert not [m for m in messages if m.event == "gap"]


@pytest.mark.asyncio
async def test_since_query_parameter_and_header_precedence() -> None:
    """``?since=`` (with ``?incarnation=``) works like Last-Event-ID; the header wins."""
    bus = history_bus(10)
    app = create_app(bus)
    inc = app.state.dashboard.incarnation
    _, messages = await sse(app, bus, f"/events?since=7&incarnation={inc}")
    assert [m.seq for m in events_of(messages)] == [8, 9, 10]
    bus = history_bus(10)
    app = create_app(bus)
    _, messages = await sse(app, bus, "/events?since=2", headers=resume_from(app, 9))
    assert [m.seq for m in events_of(messages)] == [10]
    bus = history_bus(10)
    app = create_app(bus)
    inc = app.state.dashboard.incarnation
    _, messages = await sse(app, bus, f"/events?incarnation={inc}", headers={"Last-Event-ID": "9"})
    assert [m.seq for m in events_of(messages)] == [10]


@pytest.mark.asyncio
async def test_resume_under_concurrent_publishing(big_bus: EventBus) -> None:
    """Disconnect and resume repeatedly while a thread publishes: every event exactly once.

    The queue holds every event (no drop-oldest here): what is tested is the
    seam between the replayed history and the live queue on each resume.
    """
    app = create_app(big_bus, client_queue=5000)
    hub = app.state.dashboard
    total = 3000
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def publisher() -> None:
        for i in range(total):
            big_bus.publish(EventType.TASK_STARTED, {"i": i})
        loop.call_soon_threadsafe(done.set)

    received: list[int] = []
    publishing = loop.run_in_executor(None, publisher)
    async with client_for(app) as client:
        last = 0  # the publisher may be well ahead: resume from the very start
        while True:
            headers = resume_from(app, last)
            # Each connection lives until its stream is closed under it:
            # we close it after a few events arrived (a dropped connection).
            task = asyncio.create_task(client.get("/events", headers=headers))
            await async_wait_until(lambda: len(hub.streams) == 1, what="stream")
            (stream,) = hub.streams
            await asyncio.sleep(0.002)
            finished = done.is_set()
            if finished:  # let this last connection deliver everything
                await async_wait_until(
                    lambda: stream.depth == 0 and not stream._backlog,  # noqa: B023
                    what="drain",
                )
            stream.close()
            resp = await task
            msgs = parse_sse(resp.text)
            assert not [m for m in msgs if m.event in ("gap", "dropped")]
            got = [m.seq for m in events_of(msgs)]
            received.extend(got)
            if got:
                last = got[-1]
            if finished and last == total:
                break
    await publishing
    assert received == list(range(1, total + 1))


@pytest.mark.asyncio
async def test_gap_is_announced_before_anything_else() -> None:
    """When history no longer reaches back to Last-Event-ID, a gap message comes first."""
    bus = EventBus(history_limit=10)
    publish(bus, 50)
    app = create_app(bus)
    _, messages = await sse(app, bus, "/events", headers=resume_from(app, 5))
    assert messages[0].event == "gap"
    assert messages[0].data == {"first": 6, "last": 40, "missed": 35}
    assert messages[0].id == "40"  # a client resuming after it does not hear of it twice
    assert [m.seq for m in events_of(messages)] == list(range(41, 51))


@pytest.mark.asyncio
async def test_ids_from_another_bus_reset_the_client() -> None:
    """A resume point from another incarnation, without one, or beyond the bus: reset, full replay.

    The other incarnation's seq is *within* this bus's range (the restarted
    server already published more): exactly what a bare seq cannot tell apart.
    """
    for header in ("otherinc:3", "3", "{inc}:900"):
        bus = EventBus()
        publish(bus, 5)
        app = create_app(bus)
        inc = app.state.dashboard.incarnation
        _, messages = await sse(
            app, bus, "/events", headers={"Last-Event-ID": header.format(inc=inc)}
        )
        assert messages[0].event == "reset", header
        assert messages[0].data["incarnation"] == inc
        assert messages[0].data["last_seq"] == 5
        assert messages[0].data["reason"]
        assert [m.seq for m in events_of(messages)] == [1, 2, 3, 4, 5], header
        assert app.state.dashboard.resets == 1


@pytest.mark.asyncio
async def test_bad_stream_parameters_get_400(bus: EventBus) -> None:
    """Unparseable numbers are a client error with a reason."""
    app = create_app(bus)
    async with client_for(app) as client:
        for url, headers, word in [
            ("/events?since=abc", {}, "since"),
            ("/events?replay=-1", {}, "replay"),
            ("/events", {"Last-Event-ID": "x1"}, "Last-Event-ID"),
        ]:
            resp = await client.get(url, headers=headers)
            assert resp.status_code == 400
            assert word in resp.json()["error"]
    assert app.state.dashboard.clients == 0


@pytest.mark.asyncio
async def test_client_cap_gives_503_and_frees_slots(bus: EventBus) -> None:
    """Clients beyond max_clients get 503 with Retry-After; slots free when streams end."""
    app = create_app(bus, max_clients=3)
    hub = app.state.dashboard
    async with client_for(app) as client:
        tasks = [asyncio.create_task(client.get("/events")) for _ in range(3)]
        await async_wait_until(lambda: len(hub.streams) == 3, what="3 streams")
        extra = await client.get("/events")
        assert extra.status_code == 503
        assert extra.headers["retry-after"] == "5"
        assert "too many" in extra.json()["error"]
        stats = (await client.get("/stats")).json()["dashboard"]
        assert stats["clients"] == 3
        assert stats["rejected"] == 1
        bus.close()
        assert all(r.status_code == 200 for r in await asyncio.gather(*tasks))
        assert hub.clients == 0
        assert not hub.streams
        closed = await client.get("/events")
        assert closed.status_code == 503
        assert "closed" in closed.json()["error"]


@pytest.mark.asyncio
async def test_redaction_in_stream_and_history(bus: EventBus) -> None:
    """Secrets are masked in what the dashboard shows (default keys, custom keys, off)."""
    payload = {"user": "ana", "password": "hunter2", "creds": Credentials("ana", "pw")}

    async def during() -> None:
        bus.publish(EventType.TASK_STARTED, payload, metadata={"Authorization": "Bearer t"})

    _, messages = await sse(create_app(bus), bus, "/events", during=during)
    (ev,) = events_of(messages)
    assert ev.data["data"]["password"] == "***"
    assert ev.data["data"]["creds"] == {"$type": "Credentials", "user": "ana", "password": "***"}
    assert ev.data["metadata"] == {"Authorization": "***"}
    assert bus.history()[-1].data == payload  # the bus keeps the real values
    async with client_for(create_app(bus, redact=["user"])) as client:
        shown = (await client.get("/history")).json()["events"][-1]
        assert shown["data"]["user"] == "***"
        assert shown["data"]["password"] == "hunter2"
    async with client_for(create_app(bus, redact=False)) as client:
        shown = (await client.get("/history")).json()["events"][-1]
        assert shown["data"]["password"] == "hunter2"
    async with client_for(create_app(bus, redact=Redact(["creds"], mask="[hidden]"))) as client:
        shown = (await client.get("/history")).json()["events"][-1]
        assert shown["data"]["creds"] == "[hidden]"


@pytest.mark.asyncio
async def test_oversized_event_is_truncated_in_stream(bus: EventBus) -> None:
    """An event over max_event_bytes arrives cut, marked, within the cap."""

    async def during() -> None:
        bus.publish(EventType.TASK_STARTED, {"blob": "z" * 200_000})
        bus.publish(EventType.TASK_STARTED, {"small": 1})

    resp, messages = await sse(create_app(bus, max_event_bytes=4096), bus, "/events", during=during)
    big, small = events_of(messages)
    assert big.data["truncated"] is True
    assert big.data["data"]["$truncated"] is True
    assert big.data["data"]["bytes_at_least"] > 4096
    assert big.data["seq"] == 1
    assert "truncated" not in small.data
    data_lines = [line for line in resp.text.split("\n") if line.startswith("data: ")]
    assert max(len(line) - 6 for line in data_lines) <= 4096


# ----------------------------------------------------------------------- /stats


@pytest.mark.asyncio
async def test_stats_is_bus_stats_as_json(bus: EventBus) -> None:
    """/stats is bus.stats() plus a dashboard entry."""
    bus.scope("agents").publish(EventType.TASK_STARTED, 1)
    app = create_app(bus, max_clients=7, heartbeat=3)
    async with client_for(app) as client:
        resp = await client.get("/stats")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    data = resp.json()
    expected = json.loads(json.dumps(bus.stats()))
    for key, value in expected.items():
        assert data[key] == value, key
    assert data["dashboard"] == {
        "clients": 0,
        "max_clients": 7,
        "connections_total": 0,
        "rejected": 0,
        "stalled_dropped": 0,
        "resets": 0,
        "heartbeat": 3,
        "send_timeout": 5.0,
        "client_queue": 1000,
        "max_event_bytes": 65536,
        "redacting": True,
        "placeholders": 0,
        "incarnation": app.state.dashboard.incarnation,
    }
    assert data["health"] == {}


@pytest.mark.asyncio
async def test_stats_lists_stream_queues(bus: EventBus) -> None:
    """Open SSE clients show up in /stats' sinks with depth, capacity, dropped and policy."""
    app = create_app(bus, client_queue=50)
    async with client_for(app) as client:

        async def during() -> None:
            sinks = (await client.get("/stats")).json()["sinks"]
            assert len(sinks) == 1
            assert sinks[0]["kind"] == "stream"
            assert sinks[0]["name"].startswith("sse ")
            assert sinks[0]["capacity"] == 50
            assert sinks[0]["policy"] == "drop_oldest"

        await sse(app, bus, "/events", during=during, client=client)


# --------------------------------------------------------------------- /history


@pytest.mark.asyncio
async def test_history_filters_and_pages(big_bus: EventBus) -> None:
    """Filters as /events; pages go backwards with ``before`` and forwards with ``after``."""
    agents = big_bus.scope("agents")
    for i in range(25):
        agents.publish(EventType.TASK_STARTED, i, correlation_id="run-1" if i % 2 else None)
        big_bus.publish(Probe.PING, i, source="pinger")
    app = create_app(big_bus)
    async with client_for(app) as client:
        page = (await client.get("/history", params={"limit": 10})).json()
        assert [e["seq"] for e in page["events"]] == list(range(41, 51))
        assert page["has_more"] is True
        assert page["next"] == {"before": 41}
        assert page["last_seq"] == 50
        assert page["oldest_seq"] == 1
        assert page["count"] == 10
        older = (await client.get("/history", params={"limit": 10, "before": 41})).json()
        assert [e["seq"] for e in older["events"]] == list(range(31, 41))
        forward = (await client.get("/history", params={"after": 45})).json()
        assert [e["seq"] for e in forward["events"]] == [46, 47, 48, 49, 50]
        assert forward["has_more"] is False
        assert forward["next"] is None
        first = (await client.get("/history", params={"after": 0, "limit": 3})).json()
        assert [e["seq"] for e in first["events"]] == [1, 2, 3]
        assert first["next"] == {"after": 3}

        pings = (await client.get("/history?type=Probe.PING&limit=1000")).json()["events"]
        assert len(pings) == 25
        assert {e["type"] for e in pings} == {"Probe.PING"}
        scoped = (await client.get("/history?scope=agents&limit=1000")).json()["events"]
        assert len(scoped) == 25
        assert all(e["scope"] == ["agents"] for e in scoped)
        run = (await client.get("/history?correlation_id=run-1")).json()["events"]
        assert [e["data"] for e in run] == list(range(1, 25, 2))
        by_source = (await client.get("/history?source=pinger&limit=2")).json()["events"]
        assert [e["data"] for e in by_source] == [23, 24]

        for bad in ("limit=0", "limit=1001", "before=x", "after=-3"):
            resp = await client.get(f"/history?{bad}")
            assert resp.status_code == 400, bad


# --------------------------------------------------------------- the page itself


@pytest.mark.asyncio
async def test_index_and_static_assets(bus: EventBus) -> None:
    """The page and its assets come from the package, with a strict CSP and no CDN."""
    async with client_for(create_app(bus)) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        html = page.text
        assert 'src="static/app.js"' in html
        assert 'href="static/app.css"' in html
        assert "http://" not in html
        assert "https://" not in html
        assert "<script>" not in html
        for asset, kind in (("app.js", "javascript"), ("app.css", "text/css")):
            resp = await client.get(f"/static/{asset}")
            assert resp.status_code == 200
            assert kind in resp.headers["content-type"]
            assert "https://" not in resp.text
        js = (await client.get("/static/app.js")).text
        code = "\n".join(line for line in js.splitlines() if not line.strip().startswith("//"))
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code
        assert "textContent" in js
        assert (await client.get("/static/nope.js")).status_code == 404
        assert (await client.post("/events")).status_code == 405


# ------------------------------------------------------------------------ token


@pytest.mark.asyncio
async def test_token_required_everywhere(bus: EventBus) -> None:
    """With a token, requests without it (or with a wrong one) get 401."""
    app = create_app(bus, token="s3cret-token")
    async with client_for(app) as client:
        for path in ("/", "/events", "/stats", "/history", "/static/app.js"):
            resp = await client.get(path)
            assert resp.status_code == 401, path
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert (await client.get(path, params={"token": "wrong"})).status_code == 401
            assert (await client.get(path, params={"token": "s3cret-tokenX"})).status_code == 401
            bearer = await client.get(path, headers={"Authorization": "Bearer nope"})
            assert bearer.status_code == 401
        assert app.state.dashboard.clients == 0


@pytest.mark.asyncio
async def test_token_by_query_cookie_or_bearer(bus: EventBus) -> None:
    """The query token is traded for an HttpOnly cookie; cookie and bearer work too."""
    app = create_app(bus, token="s3cret-token")
    async with client_for(app) as client:
        first = await client.get("/?token=s3cret-token")
        assert first.status_code == 303
        assert first.headers["location"] == f"{BASE}/"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=s3cret-token")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert (await client.get("/")).status_code == 200  # the client kept the cookie
        assert (await client.get("/stats")).status_code == 200
    async with client_for(app) as client:
        assert (await client.get("/stats?token=s3cret-token")).status_code == 200
        auth = {"Authorization": "Bearer s3cret-token"}
        assert (await client.get("/history", headers=auth)).status_code == 200
        resp, messages = await sse(app, bus, "/events?token=s3cret-token", client=client)
        assert resp.status_code == 200
        assert messages[0].event == "hello"


@pytest.mark.asyncio
async def test_token_compared_in_constant_time(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every candidate token goes through hmac.compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    app = create_app(bus, token="tok")
    async with client_for(app, cookies={TOKEN_COOKIE: "c"}) as client:
        await client.get("/stats?token=q", headers={"Authorization": "Bearer b"})
    assert sorted(calls) == [(b"b", b"tok"), (b"c", b"tok"), (b"q", b"tok")]


def test_create_app_validates_options(bus: EventBus) -> None:
    """Bad options fail at creation, with the option's name."""
    with pytest.raises(TypeError, match="EventBus"):
        create_app("not a bus")  # type: ignore[arg-type]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_clients": 0}, "max_clients"),
        ({"client_queue": 0}, "client_queue"),
        ({"heartbeat": -1}, "heartbeat"),
        ({"token": ""}, "token"),
        ({"max_event_bytes": 10}, "max_event_bytes"),
    ]
    for kwargs, word in cases:
        with pytest.raises(ValueError, match=word):
            create_app(bus, **kwargs)
    with pytest.raises(TypeError, match="single str"):
        create_app(bus, redact="password")

"""Server-Sent Events against a real uvicorn server: heartbeats, disconnects, live resume."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from atlas_events import EventBus, EventType
from atlas_events.web import DashboardServer

from .conftest import (
    Message,
    events_of,
    inject,
    iter_messages,
    malformed_event,
    stream_count,
    wait_until,
)

MakeServer = Callable[..., DashboardServer]


def test_events_arrive_live_from_another_thread(bus: EventBus, make_server: MakeServer) -> None:
    """An event published in a worker thread reaches a connected client at once."""
    server = make_server(bus)
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", f"{server.base_url}/events") as resp,
    ):
        messages = iter_messages(resp)
        assert next(messages).event == "hello"
        t0 = time.monotonic()
        threading.Thread(target=bus.publish, args=(EventType.TASK_STARTED, {"n": 1})).start()
        msg = next(messages)
        assert time.monotonic() - t0 < 1.0
    assert msg.event == "EventType.TASK_STARTED"
    assert msg.data["data"] == {"n": 1}


def test_heartbeat_comments_keep_idle_streams_alive(bus: EventBus, make_server: MakeServer) -> None:
    """An idle stream gets a ``: heartbeat`` comment every ``heartbeat`` seconds."""
    server = make_server(bus, heartbeat=0.2)
    beats: list[float] = []
    t0 = time.monotonic()
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", f"{server.base_url}/events") as resp,
    ):
        for msg in iter_messages(resp):
            if "heartbeat" in msg.comments:
                beats.append(time.monotonic() - t0)
                if len(beats) == 3:
                    break
    assert 0.4 <= beats[-1] < 2.0
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(beats))


def test_heartbeat_zero_disables_comments(bus: EventBus, make_server: MakeServer) -> None:
    """``heartbeat=0`` sends no comments at all."""
    server = make_server(bus, heartbeat=0)
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", f"{server.base_url}/events") as resp,
    ):
        messages = iter_messages(resp)
        assert next(messages).event == "hello"
        time.sleep(0.3)
        bus.publish(EventType.TASK_STARTED, 1)
        msg = next(messages)
    assert msg.comments == []
    assert msg.event == "EventType.TASK_STARTED"


def test_disconnect_frees_the_queue_at_once(bus: EventBus, make_server: MakeServer) -> None:
    """When a client goes away its stream is closed and detached from the bus."""
    server = make_server(bus, heartbeat=60)
    with httpx.Client(timeout=5) as client:
        with client.stream("GET", f"{server.base_url}/events") as resp:
            messages = iter_messages(resp)  # keep it: a collected iterator closes the response
            assert next(messages).event == "hello"
            assert stream_count(bus) == 1
            bus.publish(EventType.TASK_STARTED, 1)
        t0 = time.monotonic()
        wait_until(lambda: stream_count(bus) == 0, 2.0, "the stream to detach")
        freed_after = time.monotonic() - t0
        assert freed_after < 0.5
        stats = client.get(f"{server.base_url}/stats").json()
        assert stats["dashboard"]["clients"] == 0
        assert stats["sinks"] == []


def test_client_cap_on_a_real_server(
    bus: EventBus, make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A third client gets 503 (and a logged warning) while two are connected, and gets in
    once one leaves."""
    caplog.set_level(logging.WARNING, logger="atlas_events.web")
    server = make_server(bus, max_clients=2)
    url = f"{server.base_url}/events"
    with httpx.Client(timeout=5) as client:
        with client.stream("GET", url) as first, client.stream("GET", url) as second:
            first_messages, second_messages = iter_messages(first), iter_messages(second)
            assert next(first_messages).event == "hello"
            assert next(second_messages).event == "hello"
            refused = client.get(url)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            [record] = [r for r in caplog.records if "refused an SSE client" in r.message]
            assert record.atlas_bus == bus.name  # type: ignore[attr-defined]
        wait_until(lambda: stream_count(bus) == 0, 2.0, "the streams to detach")
        with client.stream("GET", url) as third:
            assert third.status_code == 200


def test_live_resume_under_concurrent_publishing(make_server: MakeServer) -> None:
    """A client that drops its connection every few hundred events and resumes with
    Last-Event-ID, while a thread keeps publishing, sees every event exactly once."""
    bus = EventBus(history_limit=10_000)
    server = make_server(bus, client_queue=10_000, heartbeat=60)
    total = 4000

    def publisher() -> None:
        for i in range(total):
            bus.publish(EventType.TASK_STARTED, {"i": i})
            if i % 100 == 0:
                time.sleep(0.002)

    thread = threading.Thread(target=publisher)
    received: list[int] = []
    notices: list[Message] = []
    last = 0
    reconnects = 0
    with httpx.Client(timeout=5) as client:
        thread.start()
        while last < total:
            reconnects += 1
            headers = {"Last-Event-ID": f"{server.app.state.dashboard.incarnation}:{last}"}
            with client.stream("GET", f"{server.base_url}/events", headers=headers) as resp:
                count = 0
                for msg in iter_messages(resp):
                    if msg.event in ("gap", "dropped", "reset"):
                        notices.append(msg)
                    if msg.id is None:
                        continue
                    received.append(msg.seq)
                    last = msg.seq
                    count += 1
                    if count >= 300 or last == total:
                        break  # drop the connection mid-stream
        thread.join()
    bus.close()
    assert notices == []
    assert received == list(range(1, total + 1))
    assert reconnects > 5


def test_stop_ends_open_streams_promptly(make_server: MakeServer) -> None:
    """Stopping the server ends connected SSE clients instead of waiting for them."""
    bus = EventBus()
    server = make_server(bus, heartbeat=60)
    got: list[Message] = []

    def reader() -> None:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", f"{server.base_url}/events") as resp,
        ):
            for msg in iter_messages(resp):
                got.append(msg)

    thread = threading.Thread(target=reader)
    thread.start()
    wait_until(lambda: stream_count(bus) == 1, 5.0, "the client")
    bus.publish(EventType.TASK_STARTED, 1)
    wait_until(lambda: len(events_of(got)) == 1, 5.0, "the event")
    t0 = time.monotonic()
    server.stop()
    thread.join(5)
    assert time.monotonic() - t0 < 2.0
    assert not thread.is_alive()
    assert [m.seq for m in events_of(got)] == [1]
    assert stream_count(bus) == 0
    bus.close()


def test_server_url_and_token(bus: EventBus, make_server: MakeServer) -> None:
    """``url`` carries the token; the query token opens the stream on a real server."""
    server = make_server(bus, token="tkn")
    assert server.url == f"{server.base_url}/?token=tkn"
    assert repr(server).endswith("running>")
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{server.base_url}/stats").status_code == 401
        with client.stream("GET", f"{server.base_url}/events?token=tkn") as resp:
            assert resp.status_code == 200
            messages = iter_messages(resp)
            assert next(messages).event == "hello"


def test_start_reports_a_taken_port(bus: EventBus, make_server: MakeServer) -> None:
    """Binding a port in use fails in start(), not later in the thread."""
    server = make_server(bus)
    other = DashboardServer(bus, port=server.port)
    with pytest.raises(OSError, match="in use"):
        other.start()
    assert not other.running


def raw_stalled_client(port: int) -> socket.socket:
    """A client that sends a request and then never reads (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def test_stalled_client_is_dropped_and_its_slot_freed(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose writes do not drain within send_timeout loses its slot and queue,
    with a logged warning.

    With ``max_clients=1`` the next client gets in instead of a 503.
    """
    caplog.set_level(logging.WARNING, logger="atlas_events.web")
    bus = EventBus(history_limit=10)
    server = make_server(bus, max_clients=1, client_queue=100, send_timeout=1.0, heartbeat=0)
    hub = server.app.state.dashboard
    stalled = raw_stalled_client(server.port)
    try:
        wait_until(lambda: hub.clients == 1 and stream_count(bus) == 1, what="the stalled client")
        blob = "x" * 20_000
        t0 = time.monotonic()
        for i in range(600):  # ~12 MB: far more than the socket buffers hold
            bus.publish(EventType.TASK_STARTED, {"blob": blob, "i": i})
            if i % 100 == 0:
                time.sleep(0.02)
        wait_until(lambda: hub.clients == 0, timeout=15, what="the stalled client to be dropped")
        assert time.monotonic() - t0 < 15
        assert stream_count(bus) == 0
        assert hub.stats()["stalled_dropped"] == 1
        [record] = [r for r in caplog.records if "dropped the SSE client" in r.message]
        assert record.atlas_bus == bus.name  # type: ignore[attr-defined]
        with (
            httpx.Client(timeout=5) as client,
            client.stream("GET", f"{server.base_url}/events") as resp,
        ):
            assert resp.status_code == 200
            assert next(iter_messages(resp)).event == "hello"
    finally:
        stalled.close()


def test_send_timeout_is_configurable_and_validated(bus: EventBus) -> None:
    """send_timeout must be a positive, finite number of seconds."""
    for bad, error in (
        (0, ValueError),
        (-1, ValueError),
        (float("inf"), ValueError),
        ("5", TypeError),
    ):
        with pytest.raises(error, match="send_timeout"):
            DashboardServer(bus, send_timeout=bad)


def read_until(base_url: str, headers: dict[str, str], want: int, query: str = "") -> list[Message]:
    """Messages of one SSE connection (``/events?<query>``) until ``want`` events arrived."""
    out: list[Message] = []
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", f"{base_url}/events?{query}", headers=headers) as resp,
    ):
        for msg in iter_messages(resp):
            out.append(msg)
            if len(events_of(out)) >= want:
                break
    return out


def test_resume_across_a_restart_gets_a_reset(make_server: MakeServer) -> None:
    """A browser's id from the old server is refused by the new one: reset, replay from its start.

    The new bus has already passed the old id, so a bare seq would look valid.
    """
    old = EventBus()
    for i in range(30):
        old.publish(EventType.TASK_STARTED, {"gen": "old", "i": i})
    first = make_server(old)
    got = read_until(first.base_url, {}, 30, "replay=all&ids=incarnation")
    last_id = events_of(got)[-1].id
    assert last_id is not None
    assert last_id.endswith(":30")
    first.stop()
    new = EventBus()
    for i in range(80):
        new.publish(EventType.TASK_STARTED, {"gen": "new", "i": i})
    second = make_server(new)
    again = read_until(second.base_url, {"Last-Event-ID": last_id}, 80)
    assert again[0].event == "reset"
    assert again[0].data["incarnation"] == second.app.state.dashboard.incarnation
    assert [m.seq for m in events_of(again)] == list(range(1, 81))
    assert all(m.data["data"]["gen"] == "new" for m in events_of(again))
    # The same bus behind a restarted DashboardServer keeps its incarnation: exact resume.
    second.stop()
    third = make_server(new)
    inc = third.app.state.dashboard.incarnation
    new.publish(EventType.TASK_COMPLETED, {"gen": "new", "i": 80})
    exact = read_until(third.base_url, {"Last-Event-ID": f"{inc}:79"}, 2)
    assert not any(m.event == "reset" for m in exact)
    assert [m.seq for m in events_of(exact)] == [80, 81]


def test_a_malformed_event_does_not_cut_the_stream(bus: EventBus, make_server: MakeServer) -> None:
    """A NaN timestamp arrives as a ``malformed`` message; the events after it still flow."""
    server = make_server(bus, heartbeat=0.5)
    bus.publish(EventType.TASK_STARTED, {"n": 0})
    inject(bus, malformed_event(timestamp=float("nan")))
    for i in range(3):
        bus.publish(EventType.TASK_COMPLETED, {"n": i})
    messages = read_until(server.base_url, {}, 4, "replay=all")
    assert [m.seq for m in events_of(messages)] == [1, 3, 4, 5]
    (bad,) = [m for m in messages if m.event == "malformed"]
    assert bad.id is None
    assert bad.data["seq"] == 2
    assert bad.data["malformed"] == ["timestamp"]
    history = httpx.get(f"{server.base_url}/history", timeout=5)
    assert history.status_code == 200
    assert [e["seq"] for e in history.json()["events"]] == [1, 2, 3, 4, 5]

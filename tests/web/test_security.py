"""Who may talk to the dashboard: Host/Origin per address family, the token on remote binds."""

from __future__ import annotations

import io
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from atlas_events import EventBus, EventType, cli
from atlas_events.web import DashboardServer, create_app

from .conftest import wait_until

EVIL = "attacker.example"


def asgi_client(app: Starlette, server: tuple[str, int], host: str) -> httpx.AsyncClient:
    """An ASGI client whose requests arrive on ``server`` (the bound address), ``Host: host``."""

    async def on_address(scope: Any, receive: Any, send: Any) -> None:
        scope["server"] = server
        await app(scope, receive, send)

    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=on_address), base_url=f"http://{host}"
    )


def ipv6_available() -> bool:
    """Whether this machine can bind ::1."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def secret_bus() -> Iterator[EventBus]:
    """A bus whose history holds a customer name."""
    bus = EventBus()
    bus.publish(EventType.TASK_STARTED, {"customer": "acme"})
    yield bus
    bus.close()


LOOPBACKS = ["127.0.0.1", "127.0.0.2", "127.45.6.7", "::1", "localhost", "::ffff:127.0.0.1"]


@pytest.mark.asyncio
@pytest.mark.parametrize("bound", LOOPBACKS)
async def test_loopback_bind_refuses_foreign_host(secret_bus: EventBus, bound: str) -> None:
    """On every loopback address, a rebound foreign Host gets 400 and no data."""
    app = create_app(secret_bus)
    async with asgi_client(app, (bound, 8765), f"{EVIL}:8765") as client:
        for path in ("/history", "/stats", "/events", "/", "/trace?correlation_id=x"):
            resp = await client.get(path)
            assert resp.status_code == 400, (bound, path)
            assert "acme" not in resp.text
            assert "allowed_hosts" in resp.json()["error"]


@pytest.mark.asyncio
@pytest.mark.parametrize("bound", LOOPBACKS)
async def test_loopback_bind_accepts_its_own_names(secret_bus: EventBus, bound: str) -> None:
    """localhost, 127.0.0.1, [::1] and the bound address itself are accepted."""
    app = create_app(secret_bus)
    literal = f"[{bound}]" if ":" in bound else bound
    for host in ("localhost:8765", "127.0.0.1:8765", "[::1]:8765", f"{literal}:8765", "LOCALHOST"):
        async with asgi_client(app, (bound, 8765), host) as client:
            resp = await client.get("/history")
            assert resp.status_code == 200, (bound, host)
            assert "acme" in resp.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "host",
    [
        "attacker.example@127.0.0.1",
        "attacker.example\\@localhost",
        "localhost/evil",
        "localhost:8765@evil",
        "localhost:99999",
        "localhost:abc",
        "127.0.0.1..",
        "::1",
        "[127.0.0.1]",
        "[localhost]",
        "localhost,attacker.example",
    ],
)
async def test_malformed_host_headers_are_refused(secret_bus: EventBus, host: str) -> None:
    """A Host that is not ``host[:port]`` (userinfo, path, bad port...) matches no allowed name."""
    app = create_app(secret_bus)
    async with asgi_client(app, ("127.0.0.1", 8765), "127.0.0.1") as client:
        resp = await client.get("/history", headers={"Host": host})
    assert resp.status_code == 400, host
    assert "acme" not in resp.text


@pytest.mark.asyncio
async def test_origin_with_userinfo_is_refused(secret_bus: EventBus) -> None:
    """An Origin whose authority hides a foreign name behind ``@`` is cross-origin."""
    app = create_app(secret_bus)
    async with asgi_client(app, ("127.0.0.1", 80), "127.0.0.1") as client:
        for origin in ("http://attacker.example@localhost", "http://localhost\\@attacker.example"):
            resp = await client.get("/events", headers={"Origin": origin})
            assert resp.status_code == 403, origin


@pytest.mark.asyncio
async def test_allow_list_is_extendable(secret_bus: EventBus) -> None:
    """allowed_hosts adds names; ``*`` turns the Host check off."""
    app = create_app(secret_bus, allowed_hosts=["dash.internal"])
    async with asgi_client(app, ("127.0.0.1", 80), "dash.internal") as client:
        assert (await client.get("/history")).status_code == 200
    async with asgi_client(app, ("127.0.0.1", 80), EVIL) as client:
        assert (await client.get("/history")).status_code == 400
    app = create_app(secret_bus, allowed_hosts=["*"])
    async with asgi_client(app, ("127.0.0.1", 80), EVIL) as client:
        assert (await client.get("/history")).status_code == 200


@pytest.mark.asyncio
async def test_foreign_origin_refused_on_streaming_and_state_changes(secret_bus: EventBus) -> None:
    """/events and non-GET requests refuse a foreign Origin (and ``null``); plain GETs do not."""
    app = create_app(secret_bus)
    async with asgi_client(app, ("127.0.0.1", 80), "127.0.0.1") as client:
        for origin in (f"http://{EVIL}", "null", "http://127.0.0.1.attacker.example"):
            resp = await client.get("/events", headers={"Origin": origin})
            assert resp.status_code == 403, origin
            assert (await client.post("/history", headers={"Origin": origin})).status_code == 403
        assert app.state.dashboard.connections == 0
        # Same-origin requests and GETs of plain JSON pass.
        assert (await client.get("/history", headers={"Origin": f"http://{EVIL}"})).is_success
        same = await client.post("/history", headers={"Origin": "http://127.0.0.1"})
        assert same.status_code == 405  # past the guard: the route takes GET only


@pytest.mark.asyncio
@pytest.mark.parametrize("bound", ["192.0.2.10", "10.1.2.3", "2001:db8::5", "0.0.0.0"])
async def test_remote_bind_requires_a_token(secret_bus: EventBus, bound: str) -> None:
    """On an address other machines can reach, no token means 403; with one, the token rules."""
    async with asgi_client(create_app(secret_bus), (bound, 80), "dash.example") as client:
        resp = await client.get("/history")
        assert resp.status_code == 403
        assert "token" in resp.json()["error"]
    app = create_app(secret_bus, token="tok")
    async with asgi_client(app, (bound, 80), "dash.example") as client:
        assert (await client.get("/history")).status_code == 401
        assert (await client.get("/history?token=tok")).status_code == 200


def test_dashboard_server_checks_host_on_loopback(secret_bus: EventBus) -> None:
    """A real server on 127.0.0.1 refuses a rebound Host and answers its own."""
    with DashboardServer(secret_bus) as server:
        evil = httpx.get(f"{server.base_url}/history", headers={"Host": f"{EVIL}:1"}, timeout=5)
        assert evil.status_code == 400
        assert "acme" not in evil.text
        assert "acme" in httpx.get(f"{server.base_url}/history", timeout=5).text


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback on this machine")
def test_dashboard_server_on_ipv6_loopback(secret_bus: EventBus) -> None:
    """On ::1 the same rules hold, and no token is made."""
    with DashboardServer(secret_bus, host="::1") as server:
        assert "token" not in server.url
        assert server.base_url.startswith("http://[::1]:")
        evil = httpx.get(f"{server.base_url}/history", headers={"Host": EVIL}, timeout=5)
        assert evil.status_code == 400
        assert "acme" in httpx.get(f"{server.base_url}/history", timeout=5).text


def test_dashboard_server_on_a_remote_bind_makes_a_token(secret_bus: EventBus) -> None:
    """Binding every interface generates a token; a request without it is refused."""
    server = DashboardServer(secret_bus, host="0.0.0.0")
    assert "?token=" in server.url
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/history"
        assert httpx.get(url, timeout=5).status_code == 401
        token = server.url.split("?token=")[1]
        assert httpx.get(url, params={"token": token}, timeout=5).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_wildcard_bind_prints_a_url_that_works(host: str) -> None:
    """``serve --host 0.0.0.0`` (or ``::``) prints a URL this machine's browser can open.

    ``http://0.0.0.0:port/`` is no address to browse to (browsers refuse it
    or send ``Host: 0.0.0.0``, which no allowed name matches): the URL names
    the loopback address of the bound family, and the page says how to reach
    it from other machines.
    """
    if host == "::" and not ipv6_available():
        pytest.skip("no IPv6 on this machine")
    thread, stop, out = serve(["serve", "--demo", "--host", host, "--port", "0"])
    try:
        url = url_of(out, wait_until)
        assert "0.0.0.0" not in url
        assert "[::]" not in url
        with httpx.Client(timeout=5, follow_redirects=True) as client:
            page = client.get(url)
            assert page.status_code == 200, page.text
            assert client.get(url.split("?")[0] + "stats").status_code == 200  # the cookie
        assert "other machines" in out.getvalue()
    finally:
        stop.set()
        thread.join(15)


def serve(argv: list[str]) -> tuple[threading.Thread, threading.Event, io.StringIO]:
    """Run ``atlas-events serve`` in a thread; stop it with the event."""
    args = cli.build_parser().parse_args(argv)
    out = io.StringIO()
    stop = threading.Event()
    thread = threading.Thread(target=cli._serve, args=(args, out, stop), daemon=True)
    thread.start()
    return thread, stop, out


def url_of(out: io.StringIO, wait: Callable[..., None]) -> str:
    """The URL ``serve`` printed."""
    wait(lambda: "http://" in out.getvalue(), what="the printed URL")
    match = re.search(r"(http://\S+)", out.getvalue())
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "localhost"])
def test_cli_loopback_binds_check_host(host: str) -> None:
    """``serve --host`` on any loopback address refuses foreign Hosts; --allow-host extends."""
    if host == "::1" and not ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    thread, stop, out = serve(
        ["serve", "--demo", "--host", host, "--port", "0", "--allow-host", "dash.test"]
    )
    try:
        url = url_of(out, wait_until)
        assert "token=" not in url
        base = url.rstrip("/")
        assert httpx.get(f"{base}/history", headers={"Host": EVIL}, timeout=5).status_code == 400
        assert httpx.get(f"{base}/stats", headers={"Host": "dash.test"}, timeout=5).is_success
        assert httpx.get(f"{base}/stats", timeout=5).is_success
    finally:
        stop.set()
        thread.join(15)


@pytest.mark.asyncio
async def test_request_without_host_is_refused_on_loopback(secret_bus: EventBus) -> None:
    """An HTTP/1.0-style request with no Host header names no allowed host: 400."""
    app = create_app(secret_bus)

    async def without_host(scope: Any, receive: Any, send: Any) -> None:
        scope["server"] = ("127.0.0.1", 8765)
        scope["http_version"] = "1.0"
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"]
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=without_host)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        resp = await client.get("/history")
    assert resp.status_code == 400
    assert "acme" not in resp.text

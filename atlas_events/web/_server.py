"""Serve a dashboard with uvicorn from a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from .._bus import EventBus
from ._app import create_app
from ._hub import Hub
from ._security import is_loopback

__all__ = ["DashboardServer"]


class DashboardServer:
    """Run a bus's dashboard in a background thread (uvicorn on its own loop).

    For programs that are not themselves async servers -- an agent run, a
    script, a test -- that want a dashboard next to their work::

        with DashboardServer(bus, port=8765) as server:
            print("dashboard at", server.url)
            run_agents(bus)

    Args:
        bus: The bus to show.
        host: Interface to bind; the default, ``127.0.0.1``, is reachable
            from this machine only. On a loopback address (127.0.0.0/8,
            ``::1``, ``localhost``) requests must name an allowed ``Host``;
            on any other address an access token is required, and one is
            generated (see :attr:`url`) when ``token`` is not given.
        port: TCP port; 0 picks a free one (see :attr:`port`).
        log_level: uvicorn's log level.
        **app_options: Passed to :func:`create_app` (``token``,
            ``max_clients``, ``heartbeat``, ``redact``, ``allowed_hosts``,
            ``send_timeout``, ``health_sources``...).

    Raises:
        TypeError: ``host`` is not a str or ``port`` not an int.
        ValueError: ``port`` is outside 0..65535, or an app option is out of
            range.

    Stopping ends the open SSE streams first, so shutdown does not wait on
    connected browsers.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        **app_options: Any,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a non-empty str, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, got {type(port).__name__}: {port!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        if not is_loopback(host) and app_options.get("token") is None:
            app_options["token"] = secrets.token_urlsafe(18)
        self.app: Starlette = create_app(bus, **app_options)
        self.host = host.strip("[]")
        self._requested_port = port
        self.port = port
        self._config = uvicorn.Config(
            self.app,
            log_level=log_level,
            lifespan="off",
            ws="none",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def wildcard(self) -> bool:
        """Whether the server listens on every interface (``0.0.0.0`` or ``::``)."""
        return _is_wildcard(self.host)

    @property
    def url(self) -> str:
        """The dashboard's address (with ``?token=`` when a token is set).

        On a wildcard bind (``0.0.0.0``, ``::``) the address names this
        machine's loopback (``127.0.0.1``, ``[::1]``): a wildcard is no
        address to browse to. Other machines use this machine's name or
        address instead.
        """
        hub: Hub = self.app.state.dashboard
        token = hub.token.value
        query = "" if token is None else f"?token={token}"
        return f"{self.base_url}/{query}"

    @property
    def base_url(self) -> str:
        """The server's root address, without the token (loopback on a wildcard bind)."""
        host = self.host
        if _is_wildcard(host):
            host = "::1" if ":" in host else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> str:
        """Bind, start serving and return :attr:`url`.

        Raises:
            OSError: The address cannot be bound.
            RuntimeError: The server did not start within ``timeout`` seconds.
            ValueError: ``timeout`` is not a positive number.
        """
        _check_timeout(timeout)
        if self._thread is not None:
            raise RuntimeError("DashboardServer.start() called twice")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"atlas-events-dashboard:{self.port}", daemon=True
        )
        self._thread.start()
        server = self._server
        deadline = time.monotonic() + timeout
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            self.stop()
            raise RuntimeError(f"the dashboard server did not start: {self._error!r}")
        return self.url

    def _run(self, sock: socket.socket) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[sock])

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by start(); a thread must not raise
            self._error = exc
        finally:
            sock.close()

    def stop(self, timeout: float = 10.0) -> None:
        """End the SSE streams, stop the server and wait for its thread. Idempotent.

        Raises:
            ValueError: ``timeout`` is not a positive number.
        """
        _check_timeout(timeout)
        thread = self._thread
        if thread is None:
            return
        loop = self._loop
        hub: Hub = self.app.state.dashboard
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(hub.close_streams)
        self._server.should_exit = True
        thread.join(timeout)

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DashboardServer {self.base_url} {state}>"


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")

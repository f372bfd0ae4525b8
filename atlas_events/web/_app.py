"""The dashboard's app factory: options, shared state, routes, security middleware, wired once."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._bus import EventBus
from ..middleware import Redact
from . import _routes
from ._hub import Hub
from ._options import (
    DEFAULT_CLIENT_QUEUE,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_SEND_TIMEOUT,
    DashboardOptions,
    HealthSource,
)
from ._security import HostGuard, SecurityHeaders, TokenGate
from ._serialize import DEFAULT_MAX_EVENT_BYTES
from ._sse import EventsEndpoint

__all__ = ["create_app"]

_PACKAGE = "atlas_events.web"


def create_app(
    bus: EventBus,
    *,
    token: str | None = None,
    max_clients: int = DEFAULT_MAX_CLIENTS,
    heartbeat: float = DEFAULT_HEARTBEAT,
    redact: Redact | Iterable[str] | bool | None = True,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    client_queue: int = DEFAULT_CLIENT_QUEUE,
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
    allowed_hosts: Sequence[str] | None = None,
    event_types: Iterable[enum.Enum | type[enum.Enum]] = (),
    health_sources: Mapping[str, HealthSource] | None = None,
) -> Starlette:
    """Build the live dashboard of ``bus`` as an ASGI application.

    Routes (``docs/dashboard.md`` describes each):

    * ``GET /`` -- the single-page dashboard (its assets under ``/static``).
    * ``GET /events`` -- Server-Sent Events, one message per event
      (``id`` = its ``seq``, ``event`` = its type as ``"Enum.MEMBER"``).
    * ``GET /history`` -- retained events as JSON, filtered and paged.
    * ``GET /trace`` -- one run (``correlation_id``) or one event's causation
      family (``event``) as a causation tree on a time axis.
    * ``GET /stats`` -- ``bus.stats()``, the dashboard's counters and
      ``health``: each health source's snapshot.

    An unknown query parameter, event type or malformed value is a ``400``
    whose JSON names the valid choices.

    Args:
        bus: The bus to show (usually a root bus).
        token: If set, every request must carry it (``?token=``, the
            ``atlas_events_token`` cookie, or ``Authorization: Bearer``);
            others get ``401``. Requests that arrive on an address other
            machines can reach are refused (``403``) when no token is set.
        max_clients: Concurrent SSE clients; more get ``503``.
        heartbeat: Seconds between heartbeat comments (0 disables them).
        redact: ``True`` masks the keys of
            :data:`atlas_events.middleware.DEFAULT_REDACTED_KEYS` in payloads
            (every structured kind) and metadata; pass key names or a
            :class:`~atlas_events.middleware.Redact` to choose, ``False`` to
            show everything. Only what the dashboard shows is redacted.
        max_event_bytes: Cap on one event's JSON; bigger payloads are cut
            and marked ``"truncated": true``.
        client_queue: Events queued per SSE client; when a client falls
            behind, its oldest queued events are dropped (and it is told).
        send_timeout: Seconds one write to an SSE client may wait for the
            client to read; a client that stalls longer is dropped and its
            slot freed.
        allowed_hosts: More ``Host`` names the dashboard answers to, besides
            ``localhost``, ``127.0.0.1``, ``::1`` and the address it is
            reached on (``"*"``: any; a guard against DNS rebinding).
        event_types: Enum classes or members a ``type`` filter may name
            before the bus has recorded or subscribed to them.
        health_sources: Named objects with a ``health()`` mapping (e.g. a
            ``RedisBridge``), shown in the bridge health panel.

    Returns:
        A Starlette application; ``app.state.dashboard`` holds its live state.

    Raises:
        TypeError: ``bus`` is not an :class:`EventBus`, or an option has the
            wrong type (the message names it).
        ValueError: An option is out of range (the message names it).
    """
    if not isinstance(bus, EventBus):
        raise TypeError(f"create_app() needs an EventBus, got {type(bus).__name__}")
    options = DashboardOptions(
        token=token,
        max_clients=max_clients,
        heartbeat=heartbeat,
        redact=redact,
        max_event_bytes=max_event_bytes,
        client_queue=client_queue,
        send_timeout=send_timeout,
        allowed_hosts=allowed_hosts,
        event_types=event_types,
        health_sources=health_sources,
    )
    hub = Hub(bus, options)
    routes = [
        Route("/", _routes.index(hub), methods=["GET"]),
        Route("/events", EventsEndpoint(hub), methods=["GET"]),
        Route("/stats", _routes.stats(hub), methods=["GET"]),
        Route("/history", _routes.history(hub), methods=["GET"]),
        Route("/trace", _routes.trace(hub), methods=["GET"]),
        Mount("/static", StaticFiles(packages=[(_PACKAGE, "static")]), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(HostGuard, allowed_hosts=options.allowed_hosts, has_token=hub.token.required),
    ]
    if hub.token.required:
        middleware.append(Middleware(TokenGate, token=hub.token))
    app = Starlette(routes=routes, middleware=middleware)
    app.state.dashboard = hub
    return app

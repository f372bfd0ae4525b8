"""A live dashboard for an event bus: Server-Sent Events, JSON endpoints, a web page.

Needs the ``web`` extra (``pip install 'atlas-events[web]'``: Starlette,
sse-starlette, uvicorn)::

    from atlas_events.web import DashboardServer, create_app

    app = create_app(bus)                 # an ASGI app: serve it with uvicorn
    with DashboardServer(bus) as server:  # or run it in a background thread
        print(server.url)

``atlas-events serve`` runs it from the command line. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from ._app import create_app
from ._options import (
    DEFAULT_CLIENT_QUEUE,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_SEND_TIMEOUT,
    HealthSource,
)
from ._security import DEFAULT_ALLOWED_HOSTS, TOKEN_COOKIE, is_loopback
from ._serialize import DEFAULT_MAX_EVENT_BYTES, MIN_EVENT_BYTES, EventEncoder, to_jsonable
from ._server import DashboardServer
from ._trace import build_trace

__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "DEFAULT_CLIENT_QUEUE",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_SEND_TIMEOUT",
    "MIN_EVENT_BYTES",
    "TOKEN_COOKIE",
    "DashboardServer",
    "EventEncoder",
    "HealthSource",
    "build_trace",
    "create_app",
    "is_loopback",
    "to_jsonable",
]

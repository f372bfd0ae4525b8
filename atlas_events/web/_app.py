"""The dashboard's ASGI application: SSE events, stats, history and the page."""

from __future__ import annotations

import asyncio
import enum
import hmac
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from importlib import resources
from typing import Any, Final

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._bus import EventBus
from .._event import Event, MemberMap
from .._streams import EventStream, Replay
from ..exceptions import BusClosedError, StreamClosedError
from ..middleware import Redact
from ._serialize import DEFAULT_MAX_EVENT_BYTES, EventEncoder, to_jsonable

__all__ = [
    "DEFAULT_CLIENT_QUEUE",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_CLIENTS",
    "TOKEN_COOKIE",
    "create_app",
]

DEFAULT_HEARTBEAT: Final = 15.0
"""Seconds between heartbeat comments on an idle SSE connection."""

DEFAULT_MAX_CLIENTS: Final = 64
"""Concurrent SSE clients served before new ones get ``503``."""

DEFAULT_CLIENT_QUEUE: Final = 1000
"""Events queued per SSE client before the oldest are dropped."""

TOKEN_COOKIE: Final = "atlas_events_token"
"""The cookie that carries the access token after the first visit."""

_PACKAGE: Final = "atlas_events.web"
_RETRY_MS: Final = 2000
_BATCH_BYTES: Final = 64 * 1024
_BATCH_EVENTS: Final = 512
_HISTORY_DEFAULT: Final = 100
_HISTORY_MAX: Final = 1000
_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
_SECURITY_HEADERS: Final = (
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def _message(event: str, data: object, *, id: int | None = None) -> str:
    head = "" if id is None else f"id: {id}\n"
    return f"{head}event: {event}\ndata: {_dumps(data)}\n\n"


def _heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat", sep="\n")


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message, "status": status}, status, headers)


# ----------------------------------------------------------------- query parsing


def _names(params: QueryParams, key: str) -> frozenset[str] | None:
    names = {n.strip() for v in params.getlist(key) for n in v.split(",") if n.strip()}
    return frozenset(names) or None


def _scope(params: QueryParams) -> tuple[str, ...] | None:
    raw = params.get("scope")
    if raw is None:
        return None
    parts = tuple(p for p in raw.split("/") if p)
    return parts or None


def _int(raw: str | None, name: str, *, minimum: int = 0, maximum: int | None = None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


class _TypeMatch:
    """Does an event type match any of the given names?

    A name matches as ``"Enum.MEMBER"``, as ``"MEMBER"`` or as the member's
    value (``"task.started"``). Memoised per type: the bus calls stream
    filters while it holds its recording lock, so they must be quick.
    """

    __slots__ = ("memo", "names")

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.memo: MemberMap[bool] = MemberMap()  # by identity (IntEnum/StrEnum)

    def __call__(self, t: enum.Enum) -> bool:
        hit = self.memo.get(t)
        if hit is None:
            names = self.names
            hit = (
                f"{type(t).__name__}.{t.name}" in names or t.name in names or str(t.value) in names
            )
            self.memo[t] = hit
        return hit


class _Query:
    """The event filters shared by ``/events`` and ``/history``."""

    __slots__ = ("correlation_id", "scope", "source", "types")

    def __init__(self, params: QueryParams) -> None:
        names = _names(params, "type")
        self.types = None if names is None else _TypeMatch(names)
        self.scope = _scope(params)
        self.correlation_id = params.get("correlation_id") or None
        self.source = params.get("source") or None

    def matches(self, ev: Event[Any]) -> bool:
        if self.types is not None and not self.types(ev.type):
            return False
        scope = self.scope
        if scope is not None and ev.scope[: len(scope)] != scope:
            return False
        if self.correlation_id is not None and ev.correlation_id != self.correlation_id:
            return False
        return self.source is None or ev.source == self.source

    def filter(self) -> Callable[[Event[Any]], bool] | None:
        """A stream filter, or ``None`` when nothing is filtered (the cheap path)."""
        if all(v is None for v in (self.types, self.scope, self.source, self.correlation_id)):
            return None
        return self.matches


# ------------------------------------------------------------------ shared state


class _Hub:
    """One app's live state: the bus, its encoder, open streams and counters."""

    def __init__(
        self,
        bus: EventBus,
        encoder: EventEncoder,
        *,
        token: str | None,
        max_clients: int,
        heartbeat: float,
        client_queue: int,
    ) -> None:
        self.bus = bus
        self.encoder = encoder
        self._token = None if token is None else token.encode()
        self.max_clients = max_clients
        self.heartbeat = heartbeat
        self.client_queue = client_queue
        self.streams: set[EventStream] = set()
        self.responses: set[anyio.CancelScope] = set()
        self.clients = 0
        self.connections = 0
        self.rejected = 0
        self._lock = threading.Lock()
        self.index_html = resources.files(_PACKAGE).joinpath("static/index.html").read_bytes()

    @property
    def protected(self) -> bool:
        return self._token is not None

    def check_token(self, value: str | None) -> bool:
        """Constant-time comparison of ``value`` with the access token."""
        if self._token is None:
            return True
        if not value:
            return False
        return hmac.compare_digest(value.encode(), self._token)

    def acquire(self) -> bool:
        with self._lock:
            if self.clients >= self.max_clients:
                self.rejected += 1
                return False
            self.clients += 1
            self.connections += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.clients -= 1

    def close_streams(self, grace: float = 0.5) -> None:
        """End every open SSE stream (call on the server's event loop).

        A response still unfinished ``grace`` seconds later (its client
        stopped reading, so the send is blocked) is cancelled.
        """
        for stream in list(self.streams):
            stream.close()
        if self.responses:
            asyncio.get_running_loop().call_later(grace, self._cancel_responses)

    def _cancel_responses(self) -> None:
        for cancel in list(self.responses):
            cancel.cancel()

    def stats(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "max_clients": self.max_clients,
            "connections_total": self.connections,
            "rejected": self.rejected,
            "heartbeat": self.heartbeat,
            "client_queue": self.client_queue,
            "max_event_bytes": self.encoder.max_event_bytes,
            "redacting": self.encoder.redact is not None,
        }


# -------------------------------------------------------------------- endpoints


class _EventsEndpoint:
    """``GET /events``: the SSE stream (a raw ASGI app, to own the client slot)."""

    def __init__(self, hub: _Hub) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        request = Request(scope, receive)
        params = request.query_params
        try:
            query = _Query(params)
            header = request.headers.get("last-event-id")
            since = _int(header, "Last-Event-ID") if header else _int(params.get("since"), "since")
            replay_raw = params.get("replay")
            replay: Replay = "all" if replay_raw == "all" else (_int(replay_raw, "replay") or False)
        except ValueError as exc:
            await _error(400, str(exc))(scope, receive, send)
            return
        if not hub.acquire():
            await _error(
                503,
                f"too many dashboard clients (at most {hub.max_clients}); retry later",
                {"Retry-After": "5"},
            )(scope, receive, send)
            return
        stream: EventStream | None = None
        try:
            reset: int | None = None
            if since is not None and since > hub.bus.last_seq:
                # The client's ids come from another bus (a restarted server):
                # say so, and replay what this bus still holds.
                reset, since = hub.bus.last_seq, 0
            client = request.client
            try:
                stream = hub.bus.stream(
                    filter=query.filter(),
                    since_seq=since,
                    replay=False if since is not None else replay,
                    max_queue=hub.client_queue,
                    policy="drop_oldest",
                    name=f"sse {client.host}:{client.port}" if client else "sse",
                )
            except BusClosedError:
                await _error(503, "the event bus is closed")(scope, receive, send)
                return
            hub.streams.add(stream)
            response = EventSourceResponse(
                self._frames(stream, reset),
                ping=hub.heartbeat,
                sep="\n",
                ping_message_factory=_heartbeat,
            )
            with anyio.CancelScope() as cancel:
                hub.responses.add(cancel)
                try:
                    await response(scope, receive, send)
                finally:
                    hub.responses.discard(cancel)
        finally:
            if stream is not None:
                stream.close()  # frees the queue at once, whatever ended the response
                hub.streams.discard(stream)
            hub.release()

    async def _frames(self, stream: EventStream, reset: int | None) -> AsyncIterator[bytes]:
        hub = self.hub
        frame = hub.encoder.frame
        get_nowait = stream.get_nowait
        hello = {
            "bus": hub.bus.name,
            "last_seq": hub.bus.last_seq,
            "replayed": stream.replay_count,
            "heartbeat": hub.heartbeat,
        }
        # Notices first: a client learns of a reset or a gap before any event.
        head = [f"retry: {_RETRY_MS}\n"]
        if reset is not None:
            head.append(_message("reset", {"last_seq": reset}))
        if stream.gap is not None:
            first, last = stream.gap
            head.append(
                _message("gap", {"first": first, "last": last, "missed": last - first + 1}, id=last)
            )
        head.append(_message("hello", hello))
        yield "".join(head).encode()
        seen_dropped = 0
        while True:
            try:
                ev = await stream.get()
            except StreamClosedError:
                return
            # Send what else is queued in the same write (one chunk, one syscall).
            chunk = frame(ev)
            parts = [chunk]
            append = parts.append
            size = len(chunk)
            for _ in range(_BATCH_EVENTS):
                nxt = get_nowait()
                if nxt is None:
                    break
                chunk = frame(nxt)
                append(chunk)
                size += len(chunk)
                if size >= _BATCH_BYTES:
                    break
            dropped = stream.dropped
            if dropped != seen_dropped:
                notice = {"dropped": dropped - seen_dropped, "total": dropped}
                parts.insert(0, _message("dropped", notice).encode())
                seen_dropped = dropped
            yield b"".join(parts)


def _index(hub: _Hub) -> Callable[[Request], Any]:
    async def index(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None and hub.protected and hub.check_token(token):
            # Trade the token in the address bar for a cookie, then drop it
            # from the URL (and so from the history and the Referer).
            url = request.url.remove_query_params("token")
            redirect = RedirectResponse(str(url), status_code=303)
            redirect.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
            return redirect
        return Response(
            hub.index_html,
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    return index


def _stats(hub: _Hub) -> Callable[[Request], Any]:
    async def stats(request: Request) -> Response:
        data = to_jsonable(hub.bus.stats())
        data["dashboard"] = hub.stats()
        return _json(data)

    return stats


def _history(hub: _Hub) -> Callable[[Request], Any]:
    async def history(request: Request) -> Response:
        params = request.query_params
        try:
            query = _Query(params)
            before = _int(params.get("before"), "before")
            after = _int(params.get("after"), "after")
            limit = _int(params.get("limit"), "limit", minimum=1, maximum=_HISTORY_MAX)
        except ValueError as exc:
            return _error(400, str(exc))
        if limit is None:
            limit = _HISTORY_DEFAULT
        bus = hub.bus
        last_seq = bus.last_seq
        retained = bus.history(correlation_id=query.correlation_id)
        matched = [
            e
            for e in retained
            if (after is None or e.seq > after)
            and (before is None or e.seq < before)
            and query.matches(e)
        ]
        has_more = len(matched) > limit
        nxt: dict[str, int] | None = None
        if after is not None and before is None:
            page = matched[:limit]
            if has_more:
                nxt = {"after": page[-1].seq}
        else:
            page = matched[len(matched) - limit :]
            if has_more:
                nxt = {"before": page[0].seq}
        to_json = hub.encoder.to_json
        meta = {
            "count": len(page),
            "has_more": has_more,
            "next": nxt,
            "last_seq": last_seq,
            "oldest_seq": retained[0].seq if retained else None,
        }
        body = '{"events":[' + ",".join(to_json(e) for e in page) + "]," + _dumps(meta)[1:]
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    return history


# ------------------------------------------------------------------- middleware


class _SecurityHeaders:
    """Adds CSP, ``nosniff``, ``no-referrer`` and ``DENY`` framing to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TokenGate:
    """Lets a request through only with the access token.

    The token may come as the ``token`` query parameter (what ``EventSource``
    can send), the :data:`TOKEN_COOKIE` cookie (set when the page is first
    opened with ``?token=``) or an ``Authorization: Bearer`` header. Each
    candidate is compared in constant time.
    """

    def __init__(self, app: ASGIApp, hub: _Hub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        candidates = (
            request.query_params.get("token"),
            request.cookies.get(TOKEN_COOKIE),
            auth[7:] if auth[:7].lower() == "bearer " else None,
        )
        ok = False
        for candidate in candidates:  # no short-circuit: same work either way
            ok = self.hub.check_token(candidate) | ok
        if ok:
            await self.app(scope, receive, send)
            return
        response = _error(
            401,
            "this dashboard needs its access token: open the URL that "
            "'atlas-events serve' printed (it ends in ?token=...)",
            {"WWW-Authenticate": 'Bearer realm="atlas-events"'},
        )
        await response(scope, receive, send)


# ---------------------------------------------------------------------- factory


def _redactor(redact: Redact | Iterable[str] | bool | None) -> Redact | None:
    if redact is None or redact is False:
        return None
    if redact is True:
        return Redact()
    if isinstance(redact, Redact):
        return redact
    if isinstance(redact, str):
        raise TypeError("redact takes an iterable of key names, not a single str")
    return Redact(redact)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def create_app(
    bus: EventBus,
    *,
    token: str | None = None,
    max_clients: int = DEFAULT_MAX_CLIENTS,
    heartbeat: float = DEFAULT_HEARTBEAT,
    redact: Redact | Iterable[str] | bool | None = True,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    client_queue: int = DEFAULT_CLIENT_QUEUE,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """Build the live dashboard of ``bus`` as an ASGI application.

    Routes:

    * ``GET /`` -- the single-page dashboard (its assets under ``/static``).
    * ``GET /events`` -- Server-Sent Events: one message per event, with
      ``id`` = the event's ``seq``, ``event`` = its type (``"Enum.MEMBER"``)
      and ``data`` = its JSON. Query: ``type`` (repeatable or
      comma-separated; ``Enum.MEMBER``, ``MEMBER`` or the value), ``scope``
      (a path prefix such as ``agents/planner``), ``correlation_id``,
      ``source``, ``replay`` (``N`` or ``all``: recent history first) and
      ``since`` (a ``seq``; the ``Last-Event-ID`` header takes precedence).
      A resumed stream replays what the client missed from history, then
      goes live, with no gap and no duplicate; if history no longer reaches
      back, a ``gap`` message says which ``seq`` range is lost. Queue
      overflows are reported by ``dropped`` messages, idle connections get a
      ``: heartbeat`` comment every ``heartbeat`` seconds.
    * ``GET /stats`` -- ``bus.stats()`` as JSON, plus a ``dashboard`` entry.
    * ``GET /history`` -- retained events as JSON, oldest first, with the
      same filters plus ``limit`` (default 100, at most 1000), ``before``
      and ``after`` (``seq`` cursors; ``next`` in the answer gives the
      cursor of the following page).

    Args:
        bus: The bus to show (usually a root bus).
        token: If set, every request must carry it (``?token=``, the
            :data:`TOKEN_COOKIE` cookie, or ``Authorization: Bearer``);
            others get ``401``.
        max_clients: Concurrent SSE clients; more get ``503``.
        heartbeat: Seconds between heartbeat comments (0 disables them).
        redact: ``True`` masks the keys of
            :data:`atlas_events.middleware.DEFAULT_REDACTED_KEYS` in payloads
            and metadata; pass key names or a
            :class:`~atlas_events.middleware.Redact` to choose, ``False`` to
            show everything. Only what the dashboard shows is redacted, never
            the events on the bus.
        max_event_bytes: Cap on one event's JSON; bigger payloads are cut
            and marked ``"truncated": true``.
        client_queue: Events queued per SSE client; when a client falls
            behind, its oldest queued events are dropped (and it is told).
        allowed_hosts: Accepted ``Host`` header values (guards a local
            dashboard against DNS rebinding); ``None`` accepts any.

    Returns:
        A Starlette application; ``app.state.dashboard`` holds its live state.

    Raises:
        TypeError: ``bus`` is not an :class:`EventBus`, or ``redact`` is a str.
        ValueError: An option is out of range.
    """
    if not isinstance(bus, EventBus):
        raise TypeError(f"create_app() needs an EventBus, got {type(bus).__name__}")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("token must be a non-empty str or None")
    _check_int("max_clients", max_clients, 1)
    _check_int("client_queue", client_queue, 1)
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or heartbeat < 0:
        raise ValueError(f"heartbeat must be a number >= 0, got {heartbeat!r}")
    encoder = EventEncoder(
        redact=_redactor(redact),
        max_event_bytes=max_event_bytes,
        cache_size=max(4096, 2 * client_queue),
    )
    hub = _Hub(
        bus,
        encoder,
        token=token,
        max_clients=max_clients,
        heartbeat=heartbeat,
        client_queue=client_queue,
    )
    routes = [
        Route("/", _index(hub), methods=["GET"]),
        Route("/events", _EventsEndpoint(hub), methods=["GET"]),
        Route("/stats", _stats(hub), methods=["GET"]),
        Route("/history", _history(hub), methods=["GET"]),
        Mount("/static", StaticFiles(packages=[(_PACKAGE, "static")]), name="static"),
    ]
    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    if token is not None:
        middleware.append(Middleware(_TokenGate, hub=hub))
    app = Starlette(routes=routes, middleware=middleware)
    app.state.dashboard = hub
    return app

"""``GET /events``: the SSE stream -- client slots, resume across restarts, stalled clients."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._event import Event
from .._logging import log_extra
from .._streams import EventStream, Replay
from ..exceptions import BusClosedError, StreamClosedError
from ._hub import Hub
from ._query import FILTER_PARAMS, EventQuery, QueryError, check_params, parse_int

__all__ = ["EVENTS_PARAMS", "EventsEndpoint", "Resume", "json_response"]

log = logging.getLogger("atlas_events.web")

EVENTS_PARAMS: Final = (*FILTER_PARAMS, "replay", "since", "incarnation", "ids", "token")
"""The query parameters ``/events`` accepts."""

_RETRY_MS: Final = 2000
_BATCH_BYTES: Final = 64 * 1024
_BATCH_EVENTS: Final = 512
_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown address"


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response that is never cached."""
    return Response(
        _dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _message(event: str, data: object, *, id: str | None = None) -> str:
    head = "" if id is None else f"id: {id}\n"
    return f"{head}event: {event}\ndata: {_dumps(data)}\n\n"


def _heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat", sep="\n")


class Resume:
    """Where a client's stream starts: after ``since``, or over again after a ``reset``.

    A resume point is a ``seq`` *of one incarnation of the bus*. It is
    trusted only when the client names the incarnation it came from -- as
    ``Last-Event-ID: <incarnation>:<seq>`` (the ids of ``?ids=incarnation``
    streams), or with ``?incarnation=`` -- and that is this bus's. A bare
    ``seq``, or one from another incarnation (a restarted server), gets a
    ``reset`` message and the bus's retained history from its start: nothing
    is skipped, and the client is told that what follows starts over.

    Raises:
        QueryError: The resume point is not ``[<incarnation>:]<seq>``.
    """

    __slots__ = ("reason", "since")

    def __init__(self, request: Request, incarnation: str, last_seq: int) -> None:
        params = request.query_params
        header = request.headers.get("last-event-id")
        name = "Last-Event-ID" if header else "since"
        raw = header or params.get("since")
        self.since: int | None = None
        self.reason: str | None = None
        if not raw:
            return
        claimed, sep, number = raw.rpartition(":")
        seq = parse_int(number, name)
        if seq is None:
            raise QueryError(name, f"{name} must be [<incarnation>:]<seq>, got {raw[:80]!r}")
        claimed = claimed if sep else (params.get("incarnation") or "")
        if claimed != incarnation:
            self.since = 0
            self.reason = (
                "the resume point names no incarnation"
                if not claimed
                else "the resume point comes from another incarnation of the bus (a restart)"
            )
        elif seq > last_seq:
            self.since, self.reason = 0, "the resume point is beyond this bus's last event"
        else:
            self.since = seq


def _replay(params: QueryParams) -> Replay:
    raw = params.get("replay")
    if raw == "all":
        return "all"
    return parse_int(raw, "replay") or False


def _id_style(params: QueryParams) -> bool:
    style = params.get("ids", "seq")
    if style not in ("seq", "incarnation"):
        raise QueryError(
            "ids", f"ids must be 'seq' or 'incarnation', got {style[:40]!r}", ["seq", "incarnation"]
        )
    return style == "incarnation"


class EventsEndpoint:
    """``GET /events`` (a raw ASGI app, to own the client slot)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        request = Request(scope, receive)
        params = request.query_params
        try:
            check_params(params, EVENTS_PARAMS)
            query = EventQuery(params, hub.bus, hub.options.event_types)
            resume = Resume(request, hub.incarnation, hub.bus.last_seq)
            replay = _replay(params)
            tagged = _id_style(params)
        except QueryError as exc:
            await json_response(exc.body(), 400)(scope, receive, send)
            return
        if not hub.acquire():
            message = f"too many dashboard clients (at most {hub.max_clients}); retry later"
            log.warning(
                "dashboard refused an SSE client from %s: %d clients already connected",
                _peer(scope),
                hub.max_clients,
                extra=log_extra(bus=hub.bus.name),
            )
            await json_response({"error": message, "status": 503}, 503, {"Retry-After": "5"})(
                scope, receive, send
            )
            return
        stalled = False
        try:
            stalled = await self._serve(scope, receive, send, query, resume, replay, tagged)
        finally:
            hub.release(stalled=stalled)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        query: EventQuery,
        resume: Resume,
        replay: Replay,
        tagged: bool,
    ) -> bool:
        """Stream until the client leaves or stalls; ``True`` if it stalled."""
        hub = self.hub
        client = scope.get("client")
        try:
            stream = hub.bus.stream(
                filter=query.filter(),
                since_seq=resume.since,
                replay=False if resume.since is not None else replay,
                max_queue=hub.options.client_queue,
                policy="drop_oldest",
                name=f"sse {client[0]}:{client[1]}" if client else "sse",
            )
        except BusClosedError:
            await json_response({"error": "the event bus is closed", "status": 503}, 503)(
                scope, receive, send
            )
            return False
        hub.streams.add(stream)
        if resume.reason is not None:
            hub.count_reset()
        response = EventSourceResponse(
            self._frames(stream, resume, tagged),
            ping=hub.options.heartbeat,
            sep="\n",
            ping_message_factory=_heartbeat,
            send_timeout=hub.options.send_timeout,
        )
        try:
            with anyio.CancelScope() as cancel:
                hub.responses.add(cancel)
                try:
                    await response(scope, receive, send)
                finally:
                    hub.responses.discard(cancel)
        except SendTimeoutError:
            log.warning(
                "dashboard dropped the SSE client at %s: a write did not drain within %s s",
                _peer(scope),
                hub.options.send_timeout,
                extra=log_extra(bus=hub.bus.name),
            )
            return True  # the client stopped reading: its slot and queue are freed
        finally:
            stream.close()  # frees the queue at once, whatever ended the response
            hub.streams.discard(stream)
        return False

    def _head(self, stream: EventStream, resume: Resume) -> bytes:
        """Notices first: a client learns of a reset or a gap before any event."""
        hub = self.hub
        bus = hub.bus
        head = [f"retry: {_RETRY_MS}\n"]
        if resume.reason is not None:
            notice = {
                "incarnation": hub.incarnation,
                "last_seq": bus.last_seq,
                "reason": resume.reason,
            }
            head.append(_message("reset", notice))
        if stream.gap is not None:
            first, last = stream.gap
            gap = {"first": first, "last": last, "missed": last - first + 1}
            head.append(_message("gap", gap, id=str(last)))
        hello = {
            "bus": bus.name,
            "incarnation": hub.incarnation,
            "last_seq": bus.last_seq,
            "replayed": stream.replay_count,
            "heartbeat": hub.options.heartbeat,
        }
        head.append(_message("hello", hello))
        return "".join(head).encode()

    async def _frames(
        self, stream: EventStream, resume: Resume, tagged: bool
    ) -> AsyncIterator[bytes]:
        yield self._head(stream, resume)
        frame = self.hub.encoder.frame
        prefix = f"id: {self.hub.incarnation}:".encode()
        get_nowait = stream.get_nowait
        seen_dropped = 0
        while True:
            try:
                ev: Event[Any] | None = await stream.get()
            except StreamClosedError:
                return
            # Send what else is queued in the same write (one chunk, one syscall).
            parts: list[bytes] = []
            size = 0
            while ev is not None:
                sse = frame(ev).sse
                if tagged and sse.startswith(b"id: "):
                    sse = prefix + sse[4:]
                parts.append(sse)
                size += len(sse)
                if size >= _BATCH_BYTES or len(parts) > _BATCH_EVENTS:
                    break
                ev = get_nowait()
            dropped = stream.dropped
            if dropped != seen_dropped:
                notice = {"dropped": dropped - seen_dropped, "total": dropped}
                parts.insert(0, _message("dropped", notice).encode())
                seen_dropped = dropped
            yield b"".join(parts)

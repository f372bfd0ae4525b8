"""Typed shapes of :meth:`EventBus.stats` snapshots."""

from __future__ import annotations

from typing import Any, TypedDict

import attrs

__all__ = ["BusStats", "HandlerFailure", "SinkStats"]


class SinkStats(TypedDict, total=False):
    """Diagnostics of one attached sink (an async stream or a bridge)."""

    kind: str
    name: str
    depth: int
    capacity: int
    dropped: int
    policy: str
    delivered: int


class BusStats(TypedDict):
    """A point-in-time snapshot of a bus's counters (cheap: nothing is copied)."""

    name: str
    scope: tuple[str, ...]
    closed: bool
    published: int
    delivered: int
    dropped_by_middleware: int
    handler_errors: int
    async_handler_errors: int
    async_handler_timeouts: int
    handler_timeouts: int
    slow_handlers: int
    handlers_removed: int
    async_handlers_loop_closed: int
    subscribers: dict[str, int]
    middleware: int
    history_size: int
    history_limit: int
    runs_retained: int
    runs_evicted: int
    streams: int
    stream_events_dropped: int
    sinks: list[SinkStats]
    children: int


@attrs.frozen(slots=True)
class HandlerFailure:
    """Payload of ``EventType.HANDLER_ERROR`` events.

    Attributes:
        event_id: Id of the event whose handler raised.
        event_type: That event's type.
        handler: Qualified name of the handler that raised.
        exception: The exception it raised.
        is_async: ``True`` when the handler was a coroutine.
    """

    event_id: str
    event_type: Any
    handler: str
    exception: BaseException
    is_async: bool = False

    def __str__(self) -> str:
        exc = self.exception
        return f"{self.handler} failed on {self.event_id}: {type(exc).__name__}: {exc}"

"""Typed shapes of :meth:`EventBus.stats` snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

import attrs

if TYPE_CHECKING:
    from ._policies import PolicyCounters
    from ._recorder import Recorder

__all__ = ["BusStats", "HandlerFailure", "SinkStats", "snapshot"]


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


def snapshot(
    name: str,
    scope: tuple[str, ...],
    closed: bool,
    subscribers: dict[str, int],
    middleware: int,
    children: int,
    recorder: Recorder,
    policies: PolicyCounters,
) -> BusStats:
    """Build a :class:`BusStats` (the recorder's counters are read under its lock)."""
    sink_stats = [s.stats() for s in recorder.sinks]  # outside the lock: sinks lock themselves
    streams = [s for s in sink_stats if s.get("kind") == "stream"]
    history = recorder.history
    with recorder.lock:
        return {
            "name": name,
            "scope": scope,
            "closed": closed,
            "published": recorder.seq,
            "delivered": recorder.delivered - recorder.skipped,
            "dropped_by_middleware": recorder.dropped,
            "handler_errors": recorder.handler_errors,
            "async_handler_errors": recorder.async_errors,
            "async_handler_timeouts": recorder.async_timeouts,
            "handler_timeouts": policies.timeouts,
            "slow_handlers": policies.slow,
            "handlers_removed": policies.removed,
            "async_handlers_loop_closed": recorder.loop_closed,
            "subscribers": subscribers,
            "middleware": middleware,
            "history_size": len(history),
            "history_limit": history.limit,
            "runs_retained": history.runs_retained,
            "runs_evicted": history.evicted_runs,
            "streams": len(streams),
            "stream_events_dropped": sum(s.get("dropped", 0) for s in streams),
            "sinks": sink_stats,
            "children": children,
        }

"""The facade's read side: history queries, counters and ``stats()``."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, TypeVar, overload

import blinker

from ._checks import check_event_type, check_int, check_str
from ._event import Event, EventKey
from ._history import Query
from ._release import KEPT as _KEPT
from ._release import release_kept
from ._stats import BusStats

if TYPE_CHECKING:
    from ._chain import MiddlewareChain
    from ._policies import PolicyCounters
    from ._recorder import Recorder
    from ._registry import Registry
    from ._scoped import Node

__all__ = ["Queries"]

T = TypeVar("T")


class Queries:
    """Part of :class:`EventBus`: what a bus has recorded and counted."""

    name: str
    _closed: bool
    _scope: tuple[str, ...]
    _node: Node
    _chain: MiddlewareChain
    _recorder: Recorder
    _registry: Registry
    _policy_counters: PolicyCounters

    # ---------------------------------------------------------------- history

    @overload
    def history(
        self,
        event_type: EventKey[T],
        *,
        source: str | None = None,
        since: float | None = None,
        since_seq: int | None = None,
        scope: tuple[str, ...] | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event[T]]: ...

    @overload
    def history(
        self,
        event_type: enum.Enum | None = None,
        *,
        source: str | None = None,
        since: float | None = None,
        since_seq: int | None = None,
        scope: tuple[str, ...] | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event[Any]]: ...

    def history(
        self,
        event_type: enum.Enum | EventKey[Any] | None = None,
        *,
        source: str | None = None,
        since: float | None = None,
        since_seq: int | None = None,
        scope: tuple[str, ...] | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event[Any]]:
        """Recorded events, oldest first, optionally filtered.

        Args:
            event_type: Only this type (``None`` or ``ANY`` for all). With an
                :class:`EventKey` the result is typed ``list[Event[T]]``
                (sound when the key is declared on the bus, see
                :meth:`declare`, or every publish goes through the key).
            source: Only events with this ``source``.
            since: Only events with ``timestamp >= since`` (epoch seconds).
            since_seq: Only events with ``seq > since_seq``.
            scope: Only events whose scope path starts with this tuple.
            correlation_id: Only this run's events, from the per-run history
                (which may reach further back than the main history).
            limit: Keep only the newest ``limit`` matches; the bus then scans
                from the newest end, so the cost follows ``limit``.

        Raises:
            TypeError, ValueError: A filter of the wrong type or range.
        """
        et = None if event_type is None else check_event_type(event_type, allow_any=True)
        check_str("source", source, allow_none=True)
        check_str("correlation_id", correlation_id, allow_none=True)
        if since_seq is not None:
            check_int("since_seq", since_seq, 0, None)
        if scope is not None and not isinstance(scope, tuple):
            raise TypeError(f"scope must be a tuple of str, got {type(scope).__name__}")
        query = Query(et, source, since, since_seq, scope, limit)
        return self._recorder.query(query, correlation_id)

    def clear_history(self) -> None:
        """Forget every recorded event (``seq`` keeps counting)."""
        self._recorder.clear()
        if _KEPT:
            release_kept()  # what sinks evicted meanwhile, outside the lock

    @property
    def history_limit(self) -> int:
        return self._recorder.history.limit

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the most recently recorded event (0 before any)."""
        return self._recorder.seq

    def run_trimmed_upto(self, correlation_id: str) -> int | None:
        """The ``seq`` of the newest event of this run the history has lost, or ``None``.

        A run loses events to ``run_history_limit``, to ``max_runs`` evicting
        it, or to :meth:`clear_history`; ``history(correlation_id=...)`` then
        starts after this ``seq``. For a run lost so long ago that its record
        was forgotten, the newest ``seq`` any forgotten run lost.

        Raises:
            TypeError: ``correlation_id`` is not a ``str``.
        """
        check_str("correlation_id", correlation_id)
        return self._recorder.run_trimmed_upto(correlation_id)

    # ------------------------------------------------------------------ stats

    def subscriber_count(self, event_type: enum.Enum | EventKey[Any] | None = None) -> int:
        """Active subscriptions for ``event_type`` (all types if ``None``)."""
        et = None if event_type is None else check_event_type(event_type, allow_any=True)
        return self._registry.subscriber_count(et)

    def stats(self) -> BusStats:
        """A snapshot of the bus's counters; cheap and safe from any thread."""
        node = self._node
        return snapshot(
            self.name,
            self._scope,
            self._closed,
            self._registry.subscribers(),
            len(self._chain),
            len(node.children),
            self._recorder,
            self._policy_counters,
        )

    # --------------------------------------------------------------- signals

    def get_signal(self, event_type: enum.Enum | EventKey[Any]) -> blinker.Signal:
        """Return this bus's private blinker signal for ``event_type``.

        The signal is the registry of record: each subscription is one of its
        receivers (``signal.receivers``), and ``signal.send(event)`` calls them
        with their filter / once / weak semantics (bypassing middleware and
        history). Two buses never share a signal, and blinker's global
        ``signal()`` namespace is never used. Subscribe through
        :meth:`subscribe`, not ``signal.connect``: the bus dispatches from a
        snapshot it rebuilds on every subscribe and unsubscribe.
        """
        return self._registry.get_signal(check_event_type(event_type, allow_any=True))


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

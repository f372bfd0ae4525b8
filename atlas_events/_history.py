"""Bounded history: the last N events, and the last M events of each of K runs.

Not thread-safe by itself: the bus calls :meth:`History.record` and the
readers while holding its lock.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from ._event import ANY, Event

__all__ = ["History", "select"]


class History:
    """The bus's event history.

    Args:
        limit: Events kept in the main history (oldest evicted first); 0
            keeps none.
        run_limit: Events kept per correlation id (run).
        max_runs: Runs kept; the least recently *published to* run is evicted
            when a new one starts.
    """

    __slots__ = ("_events", "_runs", "_trimmed", "evicted_runs", "limit", "max_runs", "run_limit")

    def __init__(self, limit: int, run_limit: int, max_runs: int) -> None:
        for name, value in (
            ("history_limit", limit),
            ("run_history_limit", run_limit),
            ("max_runs", max_runs),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.limit = limit
        self.run_limit = run_limit
        self.max_runs = max_runs
        self.evicted_runs = 0
        self._events: deque[Event[Any]] = deque(maxlen=limit)
        self._runs: OrderedDict[str, deque[Event[Any]]] = OrderedDict()
        self._trimmed: dict[str, int] = {}

    def record(self, event: Event[Any]) -> None:
        self._events.append(event)
        cid = event.correlation_id
        if cid is not None and self.max_runs and self.run_limit:
            self._record_run(cid, event)

    def _record_run(self, cid: str, event: Event[Any]) -> None:
        runs = self._runs
        run = runs.get(cid)
        if run is None:
            if len(runs) >= self.max_runs:
                evicted, _ = runs.popitem(last=False)
                self._trimmed.pop(evicted, None)
                self.evicted_runs += 1
            run = runs[cid] = deque(maxlen=self.run_limit)
        else:
            runs.move_to_end(cid)
            if len(run) == self.run_limit:
                self._trimmed[cid] = run[0].seq  # about to be pushed out
        run.append(event)

    def run_trimmed_upto(self, correlation_id: str) -> int | None:
        """The ``seq`` of the newest event this run lost to its bound, if any.

        Not known for a run that was evicted whole and has started again.
        """
        return self._trimmed.get(correlation_id)

    def __len__(self) -> int:
        return len(self._events)

    def events(self, correlation_id: str | None = None) -> list[Event[Any]]:
        """A copy of the retained events (of one run if ``correlation_id``)."""
        if correlation_id is None:
            return list(self._events)
        run = self._runs.get(correlation_id)
        return list(run) if run is not None else []

    def oldest_seq(self) -> int | None:
        return self._events[0].seq if self._events else None

    def run_ids(self) -> list[str]:
        return list(self._runs)

    @property
    def runs_retained(self) -> int:
        return len(self._runs)

    def clear(self) -> None:
        self._events.clear()
        self._runs.clear()
        self._trimmed.clear()


def select(
    events: Iterable[Event[Any]],
    event_type: enum.Enum | None = None,
    *,
    source: str | None = None,
    since: float | None = None,
    since_seq: int | None = None,
    scope: tuple[str, ...] | None = None,
    limit: int | None = None,
) -> list[Event[Any]]:
    """Filter ``events`` (oldest first) and keep the newest ``limit``."""
    out: list[Event[Any]] = []
    for ev in events:
        if event_type is not None and event_type is not ANY and ev.type is not event_type:
            continue
        if source is not None and ev.source != source:
            continue
        if since is not None and ev.timestamp < since:
            continue
        if since_seq is not None and ev.seq <= since_seq:
            continue
        if scope is not None and ev.scope[: len(scope)] != scope:
            continue
        out.append(ev)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative int, got {limit!r}")
        out = out[max(0, len(out) - limit) :] if limit else []
    return out

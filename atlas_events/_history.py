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
from ._release import keep

__all__ = ["History", "select"]

# How many runs that lost events are remembered by name (at least; twice
# max_runs if that is more): ~100 bytes each.
_MAX_LOST_RUNS = 10_000


class History:
    """The bus's event history.

    Args:
        limit: Events kept in the main history (oldest evicted first); 0
            keeps none.
        run_limit: Events kept per correlation id (run).
        max_runs: Runs kept; the least recently *published to* run is evicted
            when a new one starts.
    """

    __slots__ = (
        "_events",
        "_forgotten_upto",
        "_runs",
        "_trimmed",
        "evicted_runs",
        "limit",
        "max_runs",
        "run_limit",
    )

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
        # Per run: the seq of the newest event it lost (trimmed, or the whole
        # run evicted). Bounded: runs beyond _MAX_LOST_RUNS are forgotten, and
        # _forgotten_upto then answers for them (conservatively).
        self._trimmed: OrderedDict[str, int] = OrderedDict()
        self._forgotten_upto: int | None = None

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
                evicted, lost = runs.popitem(last=False)
                if lost:
                    self._lost(evicted, lost[-1].seq)
                keep(lost)  # dropped after the bus lock is left (see _release)
                self.evicted_runs += 1
            run = runs[cid] = deque(maxlen=self.run_limit)
        else:
            runs.move_to_end(cid)
            if len(run) == self.run_limit:
                self._lost(cid, run[0].seq)  # about to be pushed out
                keep(run[0])
        run.append(event)

    def _lost(self, cid: str, seq: int) -> None:
        trimmed = self._trimmed
        trimmed[cid] = seq
        trimmed.move_to_end(cid)
        if len(trimmed) > max(_MAX_LOST_RUNS, 2 * self.max_runs):
            _, upto = trimmed.popitem(last=False)
            if self._forgotten_upto is None or upto > self._forgotten_upto:
                self._forgotten_upto = upto

    def run_trimmed_upto(self, correlation_id: str) -> int | None:
        """The ``seq`` of the newest event this run lost, if it lost any.

        Counts events pushed out by ``run_limit``, a whole run evicted by
        ``max_runs`` (also when it has started again since) and runs
        emptied by :meth:`clear`. For a run lost so long ago that its
        record was forgotten, the newest seq any forgotten run lost (so a
        resuming reader hears of a possible gap rather than none).
        """
        upto = self._trimmed.get(correlation_id)
        if upto is None and self._forgotten_upto is not None:
            return self._forgotten_upto
        return upto

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
        """Forget every event; dropping them is deferred past the bus lock (see _release)."""
        keep(list(self._events))
        self._events.clear()
        for cid, run in self._runs.items():
            if run:
                self._lost(cid, run[-1].seq)
        keep(self._runs)
        self._runs = OrderedDict()


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

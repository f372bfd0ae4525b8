"""Bounded history: the last N events, and the last M events of each of K runs.

Not thread-safe by itself: the recorder calls :meth:`History.record_run` and
the readers while holding its lock. Nothing here drops the last reference to
an event: eviction hands what it pushed out back to the caller, which
releases it after unlocking (a payload's finalizer may publish).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ._checks import at_least, check_int
from ._event import ANY, Event

__all__ = ["History", "Query", "select"]

# How many runs that lost events are remembered by name (at least; twice
# max_runs if that is more): ~100 bytes each.
_MAX_LOST_RUNS = 10_000


@attrs.frozen
class Query:
    """A history filter: which events a :meth:`EventBus.history` call wants.

    Attributes mirror :meth:`EventBus.history`'s arguments; ``limit`` keeps
    only the newest matches.
    """

    event_type: enum.Enum | None = None
    source: str | None = None
    since: float | None = None
    since_seq: int | None = None
    scope: tuple[str, ...] | None = None
    limit: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(at_least(0, None))
    )

    def matches(self, ev: Event[Any]) -> bool:
        """Whether ``ev`` passes every filter but ``limit``."""
        et = self.event_type
        if et is not None and et is not ANY and ev.type is not et:
            return False
        if self.source is not None and ev.source != self.source:
            return False
        if self.since is not None and ev.timestamp < self.since:
            return False
        if self.since_seq is not None and ev.seq <= self.since_seq:
            return False
        scope = self.scope
        return scope is None or ev.scope[: len(scope)] == scope


class History:
    """The bus's event history.

    Args:
        limit: Events kept in the main history (oldest evicted first); 0
            keeps none.
        run_limit: Events kept per correlation id (run).
        max_runs: Runs kept; the least recently *published to* run is evicted
            when a new one starts.

    Raises:
        TypeError, ValueError: A bound is not an int >= 0 (the error names it).
    """

    __slots__ = (
        "_forgotten_upto",
        "_runs",
        "_trimmed",
        "evicted_runs",
        "limit",
        "max_runs",
        "recent",
        "run_limit",
    )

    def __init__(self, limit: int, run_limit: int, max_runs: int) -> None:
        self.limit = check_int("history_limit", limit)
        self.run_limit = check_int("run_history_limit", run_limit)
        self.max_runs = check_int("max_runs", max_runs)
        self.evicted_runs = 0
        self.recent: deque[Event[Any]] = deque(maxlen=limit)
        self._runs: OrderedDict[str, deque[Event[Any]]] = OrderedDict()
        # Per run: the seq of the newest event it lost (trimmed, or the whole
        # run evicted). Bounded: runs beyond _MAX_LOST_RUNS are forgotten, and
        # _forgotten_upto then answers for them (conservatively).
        self._trimmed: OrderedDict[str, int] = OrderedDict()
        self._forgotten_upto: int | None = None

    def record_run(self, cid: str, event: Event[Any]) -> object:
        """Append ``event`` to run ``cid``; return what that pushed out (release it unlocked)."""
        if not (self.max_runs and self.run_limit):
            return None
        runs = self._runs
        run = runs.get(cid)
        evicted: object = None
        if run is None:
            if len(runs) >= self.max_runs:
                gone, lost = runs.popitem(last=False)
                if lost:
                    self._lost(gone, lost[-1].seq)
                evicted = lost
                self.evicted_runs += 1
            run = runs[cid] = deque(maxlen=self.run_limit)
        else:
            runs.move_to_end(cid)
            if len(run) == self.run_limit:
                evicted = run[0]
                self._lost(cid, run[0].seq)  # about to be pushed out
        run.append(event)
        return evicted

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
        emptied by :meth:`take_all`. For a run lost so long ago that its
        record was forgotten, the newest seq any forgotten run lost (so a
        resuming reader hears of a possible gap rather than none).
        """
        upto = self._trimmed.get(correlation_id)
        if upto is None and self._forgotten_upto is not None:
            return self._forgotten_upto
        return upto

    def __len__(self) -> int:
        return len(self.recent)

    def events(self, correlation_id: str | None = None) -> list[Event[Any]]:
        """A copy of the retained events (of one run if ``correlation_id``)."""
        if correlation_id is None:
            return list(self.recent)
        run = self._runs.get(correlation_id)
        return list(run) if run is not None else []

    def newest(
        self,
        limit: int,
        match: Callable[[Event[Any]], bool],
        correlation_id: str | None = None,
        after_seq: int | None = None,
    ) -> list[Event[Any]]:
        """The newest ``limit`` events that ``match``, oldest first.

        Scans from the newest end and stops after ``limit`` matches (or at
        the first event at or below ``after_seq``; seqs grow along the
        history), so a short query costs the same at any history size.
        """
        found: list[Event[Any]] = []
        if limit <= 0:
            return found
        source = self.recent if correlation_id is None else self._runs.get(correlation_id)
        for ev in reversed(source or ()):
            if after_seq is not None and ev.seq <= after_seq:
                break
            if match(ev):
                found.append(ev)
                if len(found) >= limit:
                    break
        found.reverse()
        return found

    @property
    def runs_retained(self) -> int:
        return len(self._runs)

    def take_all(self) -> tuple[deque[Event[Any]], OrderedDict[str, deque[Event[Any]]]]:
        """Empty the history; return the old contents (the caller drops them unlocked).

        O(runs) under the caller's lock (each emptied run is remembered as
        having lost its events); the events themselves are not touched.
        """
        old = (self.recent, self._runs)
        for cid, run in self._runs.items():
            if run:
                self._lost(cid, run[-1].seq)
        self.recent = deque(maxlen=self.limit)
        self._runs = OrderedDict()
        return old


def select(events: Iterable[Event[Any]], query: Query) -> list[Event[Any]]:
    """Filter ``events`` (oldest first) by ``query`` and keep the newest ``limit``."""
    out = [ev for ev in events if query.matches(ev)]
    limit = query.limit
    if limit is not None:
        out = out[max(0, len(out) - limit) :] if limit else []
    return out

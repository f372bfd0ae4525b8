"""The recorder: ``seq``, history, sinks and counters, all behind the recording lock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ._event import Event
from ._history import History, Query, select
from ._locks import Deferred, RecordingLock
from ._logging import log_extra
from ._release import drop_gradually
from ._stats import SinkStats

__all__ = ["Recorder", "Registration", "Sink", "push", "sink_failed"]

log = logging.getLogger("atlas_events")


class Sink(Protocol):
    """Something fed every recorded event: an async stream, a bridge outbox.

    ``push`` is called while the bus holds its recording lock, in ``seq``
    order; it must be quick, must not block and must not publish. If it
    raises, the error is logged (``atlas_events`` logger) and the event is
    still recorded, delivered, forwarded and pushed to the other sinks. It must
    not drop the last reference to an event either (a payload's finalizer
    may publish): keep what it evicts until it has released its own lock;
    the bus defers any publish made while its lock is held.
    """

    kind: str
    blocks: bool

    def push(self, event: Event[Any]) -> None: ...

    def wait_for_room(self) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> SinkStats: ...


class Registration:
    """A registered middleware or sink: the target of its :class:`Subscription`."""

    __slots__ = ("_remove", "active", "item")

    def __init__(self, item: Any, remove: Callable[[Registration], bool]) -> None:
        self.item = item
        self.active = True
        self._remove = remove

    def cancel(self) -> bool:
        return self._remove(self)


class Recorder:
    """Gives events their ``seq``, keeps history, feeds sinks, counts outcomes.

    Every attribute is read and written under :attr:`lock` (a
    :class:`RecordingLock`); the publish loop in ``_dispatch`` inlines the
    recording step and reads the attributes directly.

    Args:
        history: The bounded history.
        deferred: The bus's queue for work left by finalizers.
    """

    __slots__ = (
        "async_errors",
        "async_timeouts",
        "blocking_sinks",
        "deferred",
        "delivered",
        "dropped",
        "events",
        "forwards",
        "handler_errors",
        "history",
        "lock",
        "loop_closed",
        "more",
        "raises",
        "seq",
        "sink_records",
        "sinks",
        "skipped",
    )

    def __init__(self, history: History, deferred: Deferred) -> None:
        self.lock = RecordingLock()
        self.deferred = deferred
        self.history = history
        self.events = history.recent  # the deque, appended to inline by the publish loop
        self.seq = 0
        self.sinks: tuple[Sink, ...] = ()
        self.blocking_sinks: tuple[Sink, ...] = ()
        self.sink_records: list[Registration] = []
        # Whether a publish has work after its handlers (forward to a parent,
        # wait for a blocking sink, raise collected handler errors): one flag
        # for the publish loop to test.
        self.forwards = False
        self.raises = False  # raise_handler_errors: the publish loop collects failures
        self.more = False
        self.delivered = 0
        self.skipped = 0
        self.dropped = 0
        self.handler_errors = 0
        self.async_errors = 0
        self.async_timeouts = 0
        self.loop_closed = 0

    # -- counters (each a short locked section) -----------------------------

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (also from code run inside the locked section)."""
        if self.lock.held_here():  # code run inside the locked section: already exclusive
            setattr(self, name, getattr(self, name) + n)
            return
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    # -- sinks ----------------------------------------------------------------

    def add_sink(
        self, rec: Registration, replay_from: Callable[[History], list[Event[Any]]] | None
    ) -> list[Event[Any]]:
        """Attach ``rec.item``; return the events ``replay_from`` picks, atomically."""
        with self.lock:
            self.sink_records.append(rec)
            self._resnapshot()
            return replay_from(self.history) if replay_from is not None else []

    def remove_sink(self, rec: Registration) -> None:
        with self.lock:
            if rec in self.sink_records:
                self.sink_records.remove(rec)
                self._resnapshot()

    def take_sinks(self) -> tuple[Sink, ...]:
        """Detach every sink (at close); return them to be closed unlocked."""
        with self.lock:
            sinks = self.sinks
            for rec in self.sink_records:
                rec.active = False
            self.sink_records = []
            self._resnapshot()
        return sinks

    def set_tail(self, *, forwards: bool, raises: bool) -> None:
        """Say whether publishes forward to a parent and collect handler errors (at setup)."""
        self.forwards = forwards
        self.raises = raises
        self._refresh_more()

    def _resnapshot(self) -> None:
        self.sinks = tuple(r.item for r in self.sink_records)
        self.blocking_sinks = tuple(s for s in self.sinks if s.blocks)
        self._refresh_more()

    def _refresh_more(self) -> None:
        self.more = self.forwards or self.raises or bool(self.blocking_sinks)

    # -- history queries --------------------------------------------------------

    def query(self, query: Query, correlation_id: str | None) -> list[Event[Any]]:
        """The events ``query`` selects, oldest first.

        A query with a ``limit`` scans from the newest end under the lock
        (its cost follows the limit, not the history size); others copy the
        retained events under the lock and filter after releasing it.
        """
        if query.limit is not None:
            with self.lock:
                return self.history.newest(
                    query.limit, query.matches, correlation_id, query.since_seq
                )
        with self.lock:
            events = self.history.events(correlation_id)
        return select(events, query)

    def run_trimmed_upto(self, correlation_id: str) -> int | None:
        """The newest ``seq`` this run lost (see :meth:`History.run_trimmed_upto`)."""
        with self.lock:
            return self.history.run_trimmed_upto(correlation_id)

    def clear(self) -> None:
        """Forget every recorded event; the old contents are dropped after unlocking."""
        with self.lock:  # O(runs): the containers are swapped, not emptied
            recent, runs = self.history.take_all()
            self.events = self.history.recent
        # Unlocked, a chunk at a time: the payloads' finalizers (if any) run
        # here, and other threads get the GIL between chunks.
        drop_gradually(recent)
        for run in runs.values():
            drop_gradually(run)


def push(sinks: tuple[Sink, ...], ev: Event[Any]) -> None:
    """Hand ``ev`` to each sink (under the recording lock); a failing sink is reported."""
    for sink in sinks:
        try:  # free unless it raises (3.11 zero-cost try)
            sink.push(ev)
        except Exception:
            sink_failed(sink, ev)


def sink_failed(sink: object, ev: Event[Any]) -> None:
    """Log a sink whose ``push`` raised: the event stays recorded and is delivered on.

    One consumer's bug must not cost the publisher, the handlers or the
    other sinks their event (nor leave it recorded on some levels only).
    """
    log.exception(
        "%s sink %s raised on event %s (seq %d); the event is recorded and delivered anyway",
        getattr(sink, "kind", "?"),
        type(sink).__qualname__,
        ev.id,
        ev.seq,
        extra=log_extra(ev),
    )

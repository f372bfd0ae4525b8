"""The subscription registry: one private blinker signal per event type, and dispatch routes.

The signals are the registry of record (each subscription is one of their
receivers); a *route* is the snapshot the publish loop iterates for one
event type: the dispatch entries of that type's receivers and of ``ANY``'s,
in subscription order. Routes are rebuilt when subscriptions change, never
per event. Receivers report back through the :class:`ReceiverHost` calls
(``count_skip``, ``remove_receiver``...), never through bus internals.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import blinker

from ._checks import type_label
from ._event import ANY, MemberMap
from ._locks import Deferred, RegistryLocks
from ._receivers import Entry, Receiver

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["Registry", "Route"]

Route = tuple[Entry, ...]


class Registry:
    """Signals, receivers and routes of one bus (the :class:`ReceiverHost` of its receivers).

    Args:
        name: The bus's name (labels the signals).
        deferred: Where work from finalizers waits for this thread to unlock.
        on_skip: Counts a delivery that was skipped (dead or filtered handler).
        on_async_error: Reports a failed async handler ``(event, name, exc)``.
        on_loop_closed: Counts a receiver that left because its loop closed.
    """

    def __init__(
        self,
        name: str,
        deferred: Deferred,
        on_skip: Callable[[], None],
        on_async_error: Callable[[Event[Any], str, Exception], None],
        on_loop_closed: Callable[[], None],
    ) -> None:
        self.name = name
        self.deferred = deferred
        self.count_skip = on_skip
        self.count_loop_closed = on_loop_closed
        self._on_async_error = on_async_error
        self.locks = RegistryLocks(self._after)
        self.signals: MemberMap[blinker.Signal] = MemberMap()
        # id(member) -> route. Plain ids are safe keys: every routed member is
        # held by self.signals, so its id cannot be reused. Keyed by identity,
        # not by the member: IntEnum / StrEnum members compare by value.
        self.routes: dict[int, Route] = {}
        self.order = itertools.count()
        self._dead: deque[Receiver] = deque()
        # Objects unlinked under the lock; released after unlocking, so that no
        # finalizer runs inside a locked section.
        self._trash: list[object] = []

    # -- the lock's exit hook ---------------------------------------------------

    def _after(self, write_held: bool) -> None:
        if write_held:
            self._purge_locked()
            return
        while self.deferred or self._trash:
            trash, self._trash = self._trash, []
            del trash  # finalizers run here, unlocked
            self.deferred.run()

    def must_defer(self) -> bool:
        """Whether this thread holds the registry lock (a finalizer inside it must not wait)."""
        return self.locks.write.held

    def purge(self) -> None:
        """Unlink receivers whose handler died (queued by weakref callbacks)."""
        if self._dead or self.deferred:
            if self.must_defer():
                return
            with self.locks.write:
                pass  # leaving the write lock purges and runs deferred work

    def _purge_locked(self) -> None:
        dead = self._dead
        while dead:
            try:
                rec = dead.popleft()
            except IndexError:  # raced with another purger
                break
            self._disconnect_locked(rec)

    # -- ReceiverHost -------------------------------------------------------------

    def receiver_died(self, rec: Receiver) -> None:
        """Weakref callback path: queue only (this thread may hold a lock)."""
        self._dead.append(rec)

    def remove_receiver(self, rec: Receiver) -> bool:
        """Unsubscribe ``rec``; ``True`` only for the call that did it."""
        if self.must_defer():  # a finalizer inside one of this thread's registry operations
            was_active = rec.active
            rec.retire()
            self._dead.append(rec)
            return was_active
        with self.locks.write:
            was_active = rec.active
            rec.retire()
            self._disconnect_locked(rec)
        return was_active

    def skip_event(self, event: Event[Any]) -> None:
        """What a retired dispatch entry calls instead of its handler."""
        self.count_skip()

    def report_async_error(self, event: Event[Any], name: str, exc: Exception) -> None:
        self._on_async_error(event, name, exc)

    # -- signals and routes -----------------------------------------------------------

    def signal_locked(self, event_type: enum.Enum) -> blinker.Signal:
        sig = self.signals.get(event_type)
        if sig is None:
            sig = blinker.Signal(f"{self.name}: {type_label(event_type)}")
            self.signals[event_type] = sig
        return sig

    def get_signal(self, event_type: enum.Enum) -> blinker.Signal:
        with self.locks.write:
            return self.signal_locked(event_type)

    def add(self, rec: Receiver, closed: Callable[[], bool]) -> bool:
        """Connect ``rec``; ``False`` (and nothing connected) if ``closed()`` turned true."""
        with self.locks.write:
            if closed():
                return False
            self.signal_locked(rec.event_type).connect(rec, weak=False)
            self._rebuild_locked(rec.event_type)
        return True

    def _disconnect_locked(self, rec: Receiver) -> None:
        sig = self.signals.get(rec.event_type)
        if sig is not None and id(rec) in sig.receivers:
            sig.disconnect(rec)
            self._trash.append(rec)
            self._rebuild_locked(rec.event_type)

    def _rebuild_locked(self, event_type: enum.Enum) -> None:
        """Rebuild routes after a change to ``event_type``'s receivers.

        A change to ``ANY`` empties every route instead of rebuilding them all
        (each is rebuilt by its next publish), so subscribing to ``ANY`` on a
        bus with many types holds the lock for O(1) work.
        """
        routes = self.routes
        if event_type is ANY:
            self._trash.append(dict(routes))  # released unlocked
            routes.clear()
            return
        key = id(event_type)
        old = routes.get(key)
        routes[key] = self._compute_locked(event_type)
        self._trash.append(old)

    def _compute_locked(self, event_type: enum.Enum) -> Route:
        recs = receivers_of(self.signal_locked(event_type))
        any_sig = self.signals.get(ANY)
        if any_sig is not None and any_sig.receivers:
            recs.extend(receivers_of(any_sig))
            recs.sort(key=_order_of)
        return tuple(r.entry for r in recs if r.active)

    def route_for(self, event_type: enum.Enum) -> Route:
        """The route of ``event_type``, built on first use."""
        route = self.routes.get(id(event_type))
        if route is None:
            if self.must_defer():  # finalizer inside a registry operation: compute, don't cache
                return self._compute_locked(event_type)
            with self.locks.write:
                route = self.routes.get(id(event_type))
                if route is None:
                    route = self.routes[id(event_type)] = self._compute_locked(event_type)
        return route

    # -- queries and close ------------------------------------------------------------

    def subscriber_count(self, event_type: enum.Enum | None) -> int:
        """Active subscriptions of ``event_type`` (of every type if ``None``).

        The signals are listed under the read lock; their receivers are
        counted after it (see :meth:`subscribers`).
        """
        self.purge()
        pairs: Sequence[tuple[enum.Enum, blinker.Signal | None]]
        with self.locks.read:
            if event_type is None:
                pairs = self.signals.items()
            else:
                pairs = [(event_type, self.signals.get(event_type))]
        return sum(1 for _, s in pairs for r in receivers_of(s) if r.active)

    def subscribers(self) -> dict[str, int]:
        """Active subscriptions per type label (types with none left out).

        Only the list of signals is taken under the read lock (one C-level
        copy); counting their receivers, O(types) of Python, runs after it,
        so a publisher that needs the write lock to build a route does not
        wait for it. Each type's count is exact at the moment it is read
        (``receivers_of`` copies a signal's receivers at once); with
        subscriptions changing meanwhile, the types are not read at one
        single instant.
        """
        self.purge()
        with self.locks.read:
            sigs = self.signals.items()
        return {
            type_label(t): n for t, s in sigs if (n := sum(1 for r in receivers_of(s) if r.active))
        }

    def close_locked(self) -> None:
        """Retire and disconnect every receiver (the caller holds the write lock)."""
        for _, sig in self.signals.items():
            for rec in receivers_of(sig):
                rec.retire()
                sig.disconnect(rec)
                self._trash.append(rec)
        self._trash.append(dict(self.routes))
        self.routes.clear()


def _order_of(rec: Receiver) -> int:
    return rec.order


def receivers_of(sig: blinker.Signal | None) -> list[Receiver]:
    """The receiver records connected to ``sig`` (all of them are ours)."""
    if sig is None:
        return []
    return cast("list[Receiver]", list(sig.receivers.values()))

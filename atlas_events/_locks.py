"""The bus's two locks: the recording lock (short, hot) and the registry read/write lock.

Both know whether the current thread holds them, so that code the garbage
collector runs inside a locked section (a finalizer, a weakref callback) can
leave its bus work for later instead of waiting for a lock its own thread
holds (see :class:`Deferred`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from readerwriterlock.rwlock import RWLockWrite

__all__ = ["QUERY", "Deferred", "RecordingLock", "RegistryLock", "RegistryLocks"]

_sleep = time.sleep
_monotonic = time.monotonic
_SPINS = 3  # yields before a blocking acquire; docs/performance.md "Core split: two threads"
_STEP_S = 50e-6  # a query's sleep while publishers wait (seconds; releases the GIL)
_MAX_YIELD_S = 0.005  # the most a query yields to waiting publishers, in all (seconds)


class _Query:
    __slots__ = ()

    def __repr__(self) -> str:
        return "QUERY"


QUERY: Final = _Query()
"""``RecordingLock.busy`` while an operation other than a publish holds the lock."""


class RecordingLock:
    """The recording lock: entered once per thread, aware of re-entry, free of lock convoys.

    ``raw`` is an ``RLock`` used as a plain lock plus a ``busy`` flag: an
    acquire that succeeds while ``busy`` still says "held" means this very
    thread is inside the locked section (code the garbage collector ran
    there, e.g. a finalizer that publishes); the caller then releases and
    defers its work instead of entering twice. This needs no owner
    bookkeeping per publish (an owner ident would cost a call and an int
    allocation; docs/performance.md "Core split: hot path").

    When the lock is busy, :meth:`wait_acquire` yields the GIL a few times
    (``sleep(0)``) before the caller blocks; an uncontended acquire only
    tests ``busy`` (an attribute load; a publish that finds it false cannot
    be a re-entry, so it needs no second test). The holder of a short critical
    section is then usually done by the time the waiter retries, so two
    publishing threads do not hand the lock (and the GIL) back and forth on
    every event (a lock convoy: two threads got 0.15-0.25x of one thread's
    throughput with a blocking acquire; a prototype of this acquire reached
    0.98-1.02x, issue 13). This package's figures: docs/performance.md
    "Core split: two threads".

    The lock is not fair: a thread that releases it and takes it again
    right away wins against the thread it woke, which is still being
    scheduled. A thread looping over a short query kept a publisher out
    for hundreds of milliseconds that way (issue 13; docs/performance.md
    "Stalls, round 5"). So a blocked publisher counts itself in
    :attr:`waiters` (:meth:`wait_acquire`), and other operations (history
    queries, ``stats()``, stream replays, ``clear_history()``) take the lock
    with :meth:`acquire`, which first lets waiting publishers in. A query
    waiting for the lock counts in :attr:`queries`; ``busy`` is that list
    whenever the lock is not held (``busy is True`` while held), so a
    publisher arriving while a query waits takes the waiter path instead of
    blocking unseen (releasing costs one attribute load more than storing
    ``False``).
    """

    __slots__ = ("busy", "queries", "raw", "waiters")

    def __init__(self) -> None:
        self.raw = threading.RLock()  # the publish loop inlines busy + raw.acquire()
        # Items are appended and popped (atomic under the GIL; an int += is not).
        self.waiters: list[None] = []  # publishers blocked in wait_acquire()
        self.queries: list[None] = []  # queries blocked in acquire()
        # The queries list when not held; True while a publish holds it, QUERY
        # while another operation does (publishers then block without yielding).
        self.busy: bool | list[None] | _Query = self.queries

    def wait_acquire(self) -> bool:
        """The contended path of a publish; ``True`` if this thread holds the lock already.

        Behind another publish (a short section) it yields a few times
        first; behind a query it blocks at once. While blocked the caller
        counts in :attr:`waiters`, so queries step aside for it. Returns
        ``False`` holding ``raw``, or ``True`` (not holding it) when this
        thread was inside the section already: code the garbage collector
        ran there published, and the caller defers its work.
        """
        if self.busy is True:  # a publish holds it: usually done within a yield
            for _ in range(_SPINS):
                _sleep(0)
                if not self.busy:
                    break
        waiters = self.waiters
        waiters.append(None)
        try:
            self.raw.acquire()  # returns at once on re-entry (an RLock)
        finally:
            waiters.pop()
        if self.busy is not self.queries:  # set by this very thread: re-entered
            self.raw.release()
            return True
        return False

    def acquire(self) -> None:
        """Take the lock, after any publisher already waiting for it (up to 5 ms).

        Raises:
            RuntimeError: This thread holds it already (code run by the
                garbage collector inside the locked section); entering
                twice would break the section's invariants.
        """
        if self.waiters and not self.held_here():  # a re-entry is refused below, at once
            deadline = _monotonic() + _MAX_YIELD_S
            while self.waiters and _monotonic() < deadline:
                _sleep(_STEP_S)  # the woken publisher takes the lock, then the GIL
        queries = self.queries
        queries.append(None)  # busy is now truthy for publishers that arrive
        try:
            self.raw.acquire()  # returns at once on re-entry (an RLock)
        finally:
            queries.pop()
        if self.busy is not queries:  # set by this very thread: re-entered
            self.raw.release()
            raise RuntimeError("the bus's recording lock is held by this thread")
        self.busy = QUERY

    def release(self) -> None:
        self.busy = self.queries
        self.raw.release()

    def held_here(self) -> bool:
        """Whether the current thread holds the lock (is inside the locked section)."""
        raw = self.raw
        if not raw.acquire(False):
            return False  # another thread holds it
        try:
            return self.busy is not self.queries  # re-entered: this thread was already inside
        finally:
            raw.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class Deferred(deque[Callable[[], object]]):
    """Bus work left by code that ran while its thread held a bus lock.

    A finalizer that publishes, subscribes, unsubscribes or closes while its
    own thread is inside a bus's locked section appends its work here; the
    bus runs it, in order, right after that thread leaves the section. A
    ``deque`` subclass so the publish loop's emptiness check costs no call
    (docs/performance.md "Core split: hot path").
    """

    __slots__ = ()

    def add(self, work: Callable[[], object]) -> None:
        self.append(work)

    def run(self) -> None:
        """Run the queued work in order (work queued meanwhile included)."""
        while self:
            try:
                work = self.popleft()
            except IndexError:  # another thread emptied it
                return
            work()


class RegistryLock:
    """One side of the registry's read/write lock; knows if this thread holds the lock."""

    __slots__ = ("_after", "_local", "_lock", "write")

    def __init__(
        self, lock: Any, local: threading.local, write: bool, after: Callable[[bool], None]
    ) -> None:
        self._lock = lock
        self._local = local
        self.write = write
        self._after = after

    @property
    def held(self) -> bool:
        """Whether this thread holds the registry lock (either side)."""
        return bool(getattr(self._local, "depth", 0))

    def __enter__(self) -> None:
        self._lock.acquire()
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.write:
                self._after(True)  # purge while still holding the write lock
        finally:
            self._local.depth -= 1
            self._lock.release()
        if not self.held:
            self._after(False)


class RegistryLocks:
    """The read and write sides of one registry lock, sharing one "held" record.

    Args:
        after: Called as ``after(True)`` before the write side is released
            and ``after(False)`` once this thread holds neither side: the
            owner purges dead receivers and runs deferred work there.
    """

    __slots__ = ("read", "write")

    def __init__(self, after: Callable[[bool], None]) -> None:
        rw = RWLockWrite()
        holders = threading.local()
        self.read = RegistryLock(rw.gen_rlock(), holders, False, after)
        self.write = RegistryLock(rw.gen_wlock(), holders, True, after)

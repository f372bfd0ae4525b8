"""The recording lock (re-entry detection, contended path) and deferred finalizer work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from atlas_events import EventBus, EventType, _locks
from atlas_events._locks import Deferred, RecordingLock


def test_recording_lock_knows_when_this_thread_is_inside() -> None:
    """held_here() is true only inside the section, and only on the holding thread."""
    lock = RecordingLock()
    assert not lock.held_here()
    seen_from_other: list[bool] = []
    with lock:
        assert lock.held_here()
        t = threading.Thread(target=lambda: seen_from_other.append(lock.held_here()))
        t.start()
        t.join(10)
    assert seen_from_other == [False]
    assert not lock.held_here()


def test_entering_the_recording_lock_twice_is_refused() -> None:
    """Re-entry (code the GC runs inside the section) raises instead of corrupting it."""
    lock = RecordingLock()
    with lock, pytest.raises(RuntimeError, match="held by this thread"):
        lock.acquire()
    assert not lock.held_here()  # released once, completely
    with lock:
        pass


def test_a_waiter_gets_the_lock_after_the_holder_leaves() -> None:
    """The contended path yields, then blocks, then enters."""
    lock = RecordingLock()
    entered = threading.Event()
    order: list[str] = []
    lock.acquire()

    def waiter() -> None:
        with lock:
            order.append("waiter")
            entered.set()

    t = threading.Thread(target=waiter)
    t.start()
    order.append("holder")
    lock.release()
    assert entered.wait(10)
    t.join(10)
    assert order == ["holder", "waiter"]


def test_deferred_work_runs_in_order_including_work_added_meanwhile() -> None:
    """Deferred.run() runs FIFO, also what the work itself defers."""
    deferred = Deferred()
    ran: list[int] = []
    deferred.add(lambda: ran.append(1))

    def two_then_four() -> None:
        ran.append(2)
        deferred.add(lambda: ran.append(4))

    deferred.add(two_then_four)
    deferred.add(lambda: ran.append(3))
    deferred.run()
    assert ran == [1, 2, 3, 4]
    assert not deferred


def test_two_threads_publishing_on_one_bus_lose_nothing() -> None:
    """Two publishers on one bus: every event recorded once, seq order gap-free."""
    bus = EventBus(history_limit=20_000)
    got: list[int] = []
    bus.subscribe(EventType.TASK_STARTED, lambda e: got.append(e.data))
    n = 5_000

    def publisher(base: int) -> None:
        for i in range(n):
            bus.publish(EventType.TASK_STARTED, base + i)

    threads = [threading.Thread(target=publisher, args=(k * n,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(2 * n))
    assert [e.seq for e in bus.history()] == list(range(1, 2 * n + 1))


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_a_blocked_publisher_counts_as_a_waiter_until_it_enters() -> None:
    """wait_acquire() is in ``waiters`` while blocked, out of it once it holds the lock."""
    lock = RecordingLock()
    inside = threading.Event()
    lock.acquire()

    def publisher() -> None:
        lock.wait_acquire()  # the contended path of a publish (busy was set)
        inside.set()
        lock.raw.release()

    t = threading.Thread(target=publisher)
    t.start()
    assert _wait_for(lambda: len(lock.waiters) == 1)
    lock.release()
    assert inside.wait(10)
    t.join(10)
    assert lock.waiters == []


def test_a_query_steps_aside_for_a_waiting_publisher(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread that releases and re-takes the lock lets the blocked publisher in first.

    Without it the releasing thread wins the race for an unfair lock every
    time (it runs, the woken waiter is still being scheduled): a loop of
    short queries kept a publisher out for hundreds of milliseconds.
    """
    monkeypatch.setattr(_locks, "_MAX_YIELD_S", 10.0)  # no time limit on a loaded machine
    lock = RecordingLock()
    order: list[str] = []
    lock.acquire()

    def publisher() -> None:
        lock.wait_acquire()
        order.append("publisher")
        lock.raw.release()

    t = threading.Thread(target=publisher)
    t.start()
    assert _wait_for(lambda: bool(lock.waiters))
    lock.release()
    with lock:  # the query's next section
        order.append("query")
    t.join(10)
    assert order == ["publisher", "query"]


def test_the_query_side_yield_is_bounded() -> None:
    """A waiter that never gets going does not block queries past the limit."""
    lock = RecordingLock()
    lock.waiters.append(None)  # a waiter that never takes the lock
    start = time.monotonic()
    with lock:
        pass
    assert time.monotonic() - start < 1.0  # _MAX_YIELD_S is 5 ms
    lock.waiters.pop()


def test_busy_stays_truthy_while_a_query_waits() -> None:
    """Released with a query waiting, the lock reads busy (publishers queue), yet not held."""
    lock = RecordingLock()
    assert lock.busy is lock.queries  # not held, and no query waits: false
    lock.queries.append(None)  # a query blocked in acquire()
    with lock:
        held: object = lock.busy  # (typed object: mypy keeps the narrowing above)
        assert held is _locks.QUERY  # held by an operation other than a publish
        assert lock.held_here()
    assert lock.busy  # an arriving publisher takes the waiter path ...
    assert lock.busy is lock.queries  # ... and is not mistaken for a re-entry
    assert not lock.held_here()
    lock.queries.pop()
    assert not lock.busy


def test_a_publisher_behind_a_query_is_counted_as_a_waiter() -> None:
    """A publisher that finds a query inside the section waits where queries see it."""
    lock = RecordingLock()
    lock.acquire()  # a publisher's section
    query_in = threading.Event()
    query_go = threading.Event()

    def query() -> None:
        with lock:
            query_in.set()
            query_go.wait(10)

    t = threading.Thread(target=query)
    t.start()
    assert _wait_for(lambda: bool(lock.queries))
    lock.release()  # the query takes the lock; busy reads true from here on
    assert query_in.wait(10)
    seen: list[int] = []

    def publisher() -> None:
        # What the publish loop does: busy is set, so the waiter path.
        if lock.busy:
            lock.wait_acquire()
        else:
            lock.raw.acquire()
        seen.append(len(lock.waiters))
        lock.raw.release()

    p = threading.Thread(target=publisher)
    p.start()
    assert _wait_for(lambda: len(lock.waiters) == 1)
    query_go.set()
    t.join(10)
    p.join(10)
    assert seen == [0]


def test_wait_acquire_tells_reentry_from_contention() -> None:
    """Inside the section (a publish's or a query's) it reports re-entry and does not hold on."""
    lock = RecordingLock()
    lock.raw.acquire()
    lock.busy = True  # a publish's section, as the publish loop sets it
    assert lock.wait_acquire() is True  # a finalizer's publish in there: defer
    assert lock.held_here()
    lock.release()
    assert not lock.held_here()
    with lock:  # a query's section
        assert lock.wait_acquire() is True
    assert lock.wait_acquire() is False  # free: taken
    lock.busy = True
    lock.release()
    assert not lock.held_here()


def test_a_reentrant_query_is_refused_at_once_even_with_publishers_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stepping aside is pointless from inside the section: the waiter cannot get in."""
    monkeypatch.setattr(_locks, "_MAX_YIELD_S", 10.0)
    lock = RecordingLock()
    with lock:
        lock.waiters.append(None)  # a publisher blocked on this very section
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="held by this thread"):
            lock.acquire()  # e.g. a finalizer calling history() inside the section
        assert time.monotonic() - start < 1.0
        lock.waiters.pop()
    assert not lock.held_here()

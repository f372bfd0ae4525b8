"""bus.wait_for (async) and bus.wait_for_sync (threads)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import warnings
from typing import Any, cast

import pytest

from atlas_events import Event, EventBus, EventType, declare
from atlas_events.exceptions import BusClosedError, InvalidEventTypeError, InvalidOptionError

from .conftest import collect


@pytest.mark.asyncio
async def test_wait_for_returns_first_match_published_after_the_call(bus: EventBus) -> None:
    """An event published before the call is ignored; the first matching one after wins."""
    bus.publish(EventType.TASK_STARTED, "before")
    waiting = bus.wait_for(EventType.TASK_STARTED)
    bus.publish(EventType.TASK_COMPLETED, "other type")
    bus.publish(EventType.TASK_STARTED, "first")
    bus.publish(EventType.TASK_STARTED, "second")
    event = await waiting
    assert event.data == "first"
    assert bus.subscriber_count() == 0


@pytest.mark.asyncio
async def test_wait_for_subscribes_before_the_coroutine_runs(bus: EventBus) -> None:
    """Race-free: an event published between the call and the task's first step is caught."""
    task = asyncio.create_task(bus.wait_for(EventType.TASK_STARTED))
    bus.publish(EventType.TASK_STARTED, 1)  # the task has not run yet
    assert (await asyncio.wait_for(task, 5)).data == 1


@pytest.mark.asyncio
async def test_wait_for_where_predicate(bus: EventBus) -> None:
    """Only an event the predicate accepts ends the wait."""
    waiting = bus.wait_for(EventType.TASK_STARTED, where=lambda e: e.data > 2)
    for i in range(5):
        bus.publish(EventType.TASK_STARTED, i)
    assert (await waiting).data == 3


@pytest.mark.asyncio
async def test_wait_for_predicate_error_is_raised_to_the_waiter(bus: EventBus) -> None:
    """A predicate that raises ends the wait with its exception; the publisher is unaffected."""
    errors: list[Event[Any]] = []
    bus.subscribe(EventType.HANDLER_ERROR, errors.append)

    def bad(event: Event[Any]) -> bool:
        raise KeyError("boom")

    waiting = bus.wait_for(EventType.TASK_STARTED, where=bad)
    bus.publish(EventType.TASK_STARTED)
    with pytest.raises(KeyError, match="boom"):
        await waiting
    assert errors == []
    assert bus.subscriber_count(EventType.TASK_STARTED) == 0


@pytest.mark.asyncio
async def test_wait_for_timeout_leaves_no_subscription(bus: EventBus) -> None:
    """TimeoutError after `timeout` seconds, and the subscription is gone."""
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="TASK_STARTED"):
        await bus.wait_for(EventType.TASK_STARTED, timeout=0.05)
    assert time.monotonic() - start < 5
    assert bus.subscriber_count() == 0


@pytest.mark.asyncio
async def test_wait_for_cancellation_leaves_no_subscription(bus: EventBus) -> None:
    """Cancelling the waiting task unsubscribes."""
    task = asyncio.create_task(bus.wait_for(EventType.TASK_STARTED))
    await asyncio.sleep(0.01)
    assert bus.subscriber_count() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bus.subscriber_count() == 0


def test_abandoned_wait_for_coroutine_is_unsubscribed_when_collected(bus: EventBus) -> None:
    """A coroutine that is never awaited does not leave its subscription behind."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine was never awaited"
        coro = bus.wait_for(EventType.TASK_STARTED)
        assert bus.subscriber_count() == 1
        del coro
        collect()
    bus.publish(EventType.TASK_STARTED)
    assert bus.subscriber_count() == 0


@pytest.mark.asyncio
async def test_wait_for_from_another_thread(bus: EventBus) -> None:
    """An event published on another thread wakes the waiting loop."""
    waiting = bus.wait_for(EventType.TASK_STARTED)
    worker = threading.Thread(target=bus.publish, args=(EventType.TASK_STARTED, "t"))
    worker.start()
    event = await asyncio.wait_for(waiting, 10)
    worker.join()
    assert event.data == "t"


@pytest.mark.asyncio
async def test_wait_for_on_a_scope_sees_events_of_child_scopes(bus: EventBus) -> None:
    """wait_for works on a ScopedEventBus, including events forwarded from below."""
    agents = bus.scope("agents")
    planner = agents.scope("planner")
    waiting = agents.wait_for(EventType.AGENT_STARTED)
    planner.publish(EventType.AGENT_STARTED, "p")
    event = await waiting
    assert event.scope == ("agents", "planner")
    assert agents.subscriber_count() == 0


@pytest.mark.asyncio
async def test_wait_for_typed_key(bus: EventBus) -> None:
    """A typed key works as the event type."""
    key = declare(EventType.TASK_COMPLETED, int)
    waiting = bus.wait_for(key, where=lambda e: e.data > 1)
    bus.publish(key, 1)
    bus.publish(key, 2)
    assert (await waiting).data == 2


def test_wait_for_rejects_bad_arguments_before_subscribing(bus: EventBus) -> None:
    """Bad type, timeout or predicate raise at the call and subscribe nothing."""
    with pytest.raises(InvalidEventTypeError):
        bus.wait_for("task.started")  # type: ignore[call-overload]
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            bus.wait_for_sync(EventType.TASK_STARTED, timeout=bad)
    for wrong in (True, "1"):
        with pytest.raises(TypeError, match="timeout"):
            bus.wait_for_sync(EventType.TASK_STARTED, timeout=cast(Any, wrong))
    with pytest.raises(TypeError):
        bus.wait_for_sync(EventType.TASK_STARTED, where=42)  # type: ignore[call-overload]
    assert bus.subscriber_count() == 0
    bus.close()
    with pytest.raises(BusClosedError):
        bus.wait_for_sync(EventType.TASK_STARTED)


def test_wait_for_sync_from_a_thread(bus: EventBus) -> None:
    """wait_for_sync blocks a plain thread until another thread publishes."""
    ready = threading.Event()
    results: list[Event[Any]] = []
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            ready.set()
            results.append(bus.wait_for_sync(EventType.TASK_COMPLETED, timeout=10))
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    ready.wait()
    deadline = time.monotonic() + 10
    while bus.subscriber_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    bus.publish(EventType.TASK_COMPLETED, "done")
    t.join(10)
    assert errors == []
    assert [e.data for e in results] == ["done"]
    assert bus.subscriber_count() == 0


def test_wait_for_sync_timeout(bus: EventBus) -> None:
    """wait_for_sync raises TimeoutError and unsubscribes."""
    with pytest.raises(TimeoutError):
        bus.wait_for_sync(EventType.TASK_COMPLETED, timeout=0.02)
    assert bus.subscriber_count() == 0


def test_many_threads_each_get_exactly_one_event(bus: EventBus) -> None:
    """Stress: waiters on many threads, many publishers; every waiter gets a match, none leak."""
    n = 16
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    started = threading.Barrier(n + 1)

    def waiter(i: int) -> None:
        try:
            started.wait()
            ev = bus.wait_for_sync(EventType.TASK_STARTED, where=lambda e: e.data == i, timeout=30)
            with lock:
                results.append(ev.data)
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    started.wait()
    deadline = time.monotonic() + 30
    while bus.subscriber_count() < n and time.monotonic() < deadline:
        time.sleep(0.001)
    pubs = [
        threading.Thread(target=lambda k=k: [bus.publish(EventType.TASK_STARTED, i) for i in k])
        for k in (range(0, n, 2), range(1, n, 2))
    ]
    for p in pubs:
        p.start()
    for t in [*pubs, *threads]:
        t.join(30)
    assert errors == []
    assert sorted(results) == list(range(n))
    assert bus.subscriber_count() == 0


@pytest.mark.parametrize(
    "timeout", [math.inf, math.nan, -math.inf, 10**100, 2**63, 0, -1, True, "5"]
)
def test_wait_timeouts_that_are_not_finite_seconds_are_refused_up_front(timeout: Any) -> None:
    """inf, NaN, huge, zero, negative, bool or str timeouts raise InvalidOptionError (named).

    Never an ``OverflowError`` from the wait primitive later, and no waiter
    is left subscribed.
    """
    bus = EventBus(name="waits")
    with pytest.raises(InvalidOptionError, match="timeout"):
        bus.wait_for_sync(EventType.TASK_STARTED, timeout=timeout)

    async def main() -> None:
        with pytest.raises(InvalidOptionError, match="timeout"):
            await bus.wait_for(EventType.TASK_STARTED, timeout=timeout)

    asyncio.run(main())
    assert bus.subscriber_count() == 0
    bus.close()


@pytest.mark.parametrize("timeout", [float("inf"), 1e300, 10**400], ids=["inf", "1e300", "10**400"])
def test_wait_for_refuses_a_timeout_beyond_what_a_wait_can_take(
    bus: EventBus, timeout: float
) -> None:
    """An infinite or huge timeout raises ValueError naming it at the call, not OverflowError."""
    with pytest.raises(ValueError, match="timeout"):
        bus.wait_for_sync(EventType.TASK_STARTED, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        _ = bus.wait_for(EventType.TASK_STARTED, timeout=timeout)
    assert bus.subscriber_count() == 0


@pytest.mark.asyncio
async def test_wait_for_task_cancelled_before_its_first_step_leaves_no_subscription(
    bus: EventBus,
) -> None:
    """A task cancelled before it ever ran (its coroutine never started) still unsubscribes."""
    task = asyncio.create_task(bus.wait_for(EventType.TASK_STARTED, timeout=5))
    task.cancel()  # the task has not run yet: the coroutine's body never starts
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bus.subscriber_count() == 0  # at once, not when a traceback lets go of it


@pytest.mark.asyncio
async def test_wait_for_closed_before_start_and_asyncio_wait_for_zero(bus: EventBus) -> None:
    """close() on the unawaited coroutine, and asyncio.wait_for(..., 0), unsubscribe at once."""
    coro = bus.wait_for(EventType.TASK_STARTED)
    coro.close()
    assert bus.subscriber_count() == 0
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bus.wait_for(EventType.TASK_STARTED), 0)
    assert bus.subscriber_count() == 0


@pytest.mark.asyncio
async def test_wait_for_ends_with_bus_closed_error_when_the_bus_closes(bus: EventBus) -> None:
    """Closing the bus ends a pending wait (no timeout) with BusClosedError, promptly."""
    task = asyncio.create_task(bus.wait_for(EventType.TASK_STARTED))
    await asyncio.sleep(0.01)
    bus.close()
    with pytest.raises(BusClosedError):
        await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_wait_for_on_a_scope_ends_when_an_ancestor_closes(bus: EventBus) -> None:
    """A wait on a grandchild scope ends with BusClosedError when the root is closed."""
    child = bus.scope("a").scope("b")
    waiting = child.wait_for(EventType.TASK_STARTED, timeout=30)
    bus.close()
    with pytest.raises(BusClosedError):
        await asyncio.wait_for(waiting, 5)


def test_wait_for_sync_ends_when_another_thread_closes_the_bus(bus: EventBus) -> None:
    """A thread blocked in wait_for_sync gets BusClosedError when the bus closes, not a hang."""
    closer = threading.Timer(0.05, bus.close)
    closer.start()
    start = time.monotonic()
    with pytest.raises(BusClosedError):
        bus.wait_for_sync(EventType.TASK_STARTED, timeout=30)
    closer.join()
    assert time.monotonic() - start < 10


def test_many_waiters_all_end_when_the_bus_closes(bus: EventBus) -> None:
    """Every one of many blocked threads is released by close(); none is left waiting."""
    outcomes: list[str] = []
    lock = threading.Lock()

    def wait() -> None:
        try:
            bus.wait_for_sync(EventType.TASK_STARTED, timeout=30)
            result = "event"
        except BusClosedError:
            result = "closed"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=wait) for _ in range(20)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while bus.subscriber_count() < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    bus.close()
    for t in threads:
        t.join(10)
    assert outcomes == ["closed"] * 20


def test_never_awaited_warning_names_wait_for(bus: EventBus) -> None:
    """The "never awaited" RuntimeWarning of a dropped wait names wait_for, not a private helper."""

    def drop_a_wait() -> None:
        dropped = bus.wait_for(EventType.TASK_STARTED)
        del dropped  # never awaited
        collect()

    with pytest.warns(RuntimeWarning, match=r"EventBus\.wait_for' was never awaited"):
        drop_a_wait()
    assert bus.subscriber_count() == 0


@pytest.mark.asyncio
async def test_a_waiting_task_reads_as_wait_for(bus: EventBus) -> None:
    """A task running bus.wait_for shows as EventBus.wait_for in its repr (asyncio debugging)."""
    task = asyncio.create_task(bus.wait_for(EventType.TASK_STARTED, timeout=5))
    await asyncio.sleep(0)
    assert "EventBus.wait_for()" in repr(task)
    assert asyncio.iscoroutine(task.get_coro())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

"""Tests for async handlers and publish_async."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, cast

import pytest

from atlas_events import (
    Event,
    EventBus,
    EventType,
    HandlerFailure,
    InvalidHandlerError,
    Subscription,
)
from atlas_events.exceptions import HandlerLoopError

ET = EventType


def test_async_handler_subscribed_before_the_loop_binds_at_first_dispatch(bus: EventBus) -> None:
    """Module-level registration: it runs on the loop running where it is first dispatched."""
    ran: list[asyncio.AbstractEventLoop] = []

    async def handler(e: Event[Any]) -> None:
        ran.append(asyncio.get_running_loop())

    token = bus.subscribe(ET.TASK_STARTED, handler)  # no loop is running here

    async def main() -> asyncio.AbstractEventLoop:
        await bus.publish_async(ET.TASK_STARTED)
        worker = threading.Thread(target=bus.publish, args=(ET.TASK_STARTED,))
        worker.start()
        worker.join(10)
        for _ in range(200):
            if len(ran) == 2:
                break
            await asyncio.sleep(0.01)
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert ran == [loop, loop]  # the worker's publish ran it on the bound loop too
    assert token.active


def test_module_level_async_handler_follows_each_new_loop(bus: EventBus) -> None:
    """Subscribed before any loop: after its loop closes it rebinds to the next running loop.

    As with several ``asyncio.run()`` calls, or pytest-asyncio's loop per test:
    the handler runs in each, stays subscribed and is not counted as lost.
    Dispatched in between with no running loop, it is reported, not dropped.
    """
    ran: list[tuple[int, asyncio.AbstractEventLoop]] = []
    errors: list[Event[Any]] = []

    async def handler(e: Event[Any]) -> None:
        ran.append((e.data, asyncio.get_running_loop()))

    token = bus.subscribe(ET.TASK_STARTED, handler)  # no loop is running here

    async def main(n: int) -> asyncio.AbstractEventLoop:
        await bus.publish_async(ET.TASK_STARTED, n)
        return asyncio.get_running_loop()

    first = asyncio.run(main(1))
    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    bus.publish(ET.TASK_STARTED, 0)  # its loop is closed and none runs here
    second = asyncio.run(main(2))
    assert ran == [(1, first), (2, second)]
    assert token.active
    assert bus.stats()["async_handlers_loop_closed"] == 0
    (error,) = errors
    assert isinstance(error.data.exception, HandlerLoopError)


def test_async_handler_dispatched_with_no_loop_anywhere_is_reported(bus: EventBus) -> None:
    """Before any loop could bind it, an async handler's event is a HANDLER_ERROR, not lost."""
    errors: list[Event[Any]] = []

    async def handler(e: Event[Any]) -> None:
        pass

    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    token = bus.subscribe(ET.TASK_STARTED, handler)
    bus.publish(ET.TASK_STARTED)
    (err,) = errors
    assert isinstance(err.data.exception, HandlerLoopError)
    assert "loop=" in str(err.data.exception)
    assert token.active  # a later dispatch on a loop still binds it


def test_async_handler_runs_on_an_explicit_loop(bus: EventBus) -> None:
    """loop=... pins the handler to that loop, whichever thread publishes."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    seen: list[tuple[Any, bool]] = []
    done = threading.Event()

    async def handler(e: Event[Any]) -> None:
        seen.append((e.data, asyncio.get_running_loop() is loop))
        done.set()

    try:
        bus.subscribe(ET.TASK_STARTED, handler, loop=loop)
        bus.publish(ET.TASK_STARTED, "from main thread")
        assert done.wait(10)
        assert seen == [("from main thread", True)]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


def test_loop_option_is_checked(bus: EventBus) -> None:
    """A loop= that is not an event loop is refused before anything is registered."""
    with pytest.raises(TypeError, match="loop"):
        bus.subscribe(ET.TASK_STARTED, lambda e: None, loop="main")  # type: ignore[call-overload]
    assert bus.subscriber_count() == 0


def test_async_handler_of_a_closed_loop_is_unsubscribed_and_counted(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """Once its loop is closed the handler can never run: token inactive, count updated."""
    ran: list[Any] = []

    async def handler(e: Event[Any]) -> None:
        ran.append(e.data)

    async def subscribe() -> Subscription:
        return bus.subscribe(ET.TASK_STARTED, handler)

    token = asyncio.run(subscribe())  # asyncio.run closes its loop on return
    assert bus.subscriber_count(ET.TASK_STARTED) == 1
    with caplog.at_level(logging.WARNING, logger="atlas_events"):
        bus.publish(ET.TASK_STARTED, 1)
        bus.publish(ET.TASK_STARTED, 2)
    assert ran == []
    assert not token.active
    assert bus.subscriber_count(ET.TASK_STARTED) == 0
    assert bus.stats()["async_handlers_loop_closed"] == 1
    assert sum("event loop is closed" in r.getMessage() for r in caplog.records) == 1


def test_coroutine_filters_and_middleware_are_refused(bus: EventBus) -> None:
    """Filters and middleware must be plain functions: a coroutine one would always be truthy."""

    async def afilter(e: Event[Any]) -> bool:
        return False

    with pytest.raises(InvalidHandlerError, match="coroutine"):
        bus.subscribe(ET.TASK_STARTED, lambda e: None, filter=cast(Any, afilter))
    with pytest.raises(InvalidHandlerError, match="coroutine"):
        bus.add_middleware(afilter)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_async_handler_runs_on_its_loop_from_other_threads(bus: EventBus) -> None:
    """A coroutine handler runs on the loop that subscribed it, whoever publishes."""
    loop = asyncio.get_running_loop()
    got: list[tuple[int, bool]] = []
    done = asyncio.Event()

    async def handler(e: Event[Any]) -> None:
        got.append((e.data, asyncio.get_running_loop() is loop))
        if len(got) == 20:
            done.set()

    bus.subscribe(ET.TASK_STARTED, handler)

    def publish_some(start: int) -> None:
        for i in range(start, start + 10):
            bus.publish(ET.TASK_STARTED, i)

    threads = [threading.Thread(target=publish_some, args=(s,)) for s in (0, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    await asyncio.wait_for(done.wait(), 5)
    assert sorted(d for d, _ in got) == list(range(20))
    assert all(on_loop for _, on_loop in got)


@pytest.mark.asyncio
async def test_async_handler_errors_are_reported(bus: EventBus) -> None:
    """An async handler's exception becomes a HANDLER_ERROR event (is_async=True)."""
    errors: list[Event[Any]] = []

    async def bad(e: Event[Any]) -> None:
        raise ValueError("async boom")

    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    bus.subscribe(ET.TASK_STARTED, bad)
    event_id = await bus.publish_async(ET.TASK_STARTED)
    await asyncio.sleep(0)
    (err,) = errors
    info = err.data
    assert isinstance(info, HandlerFailure)
    assert info.is_async
    assert info.event_id == event_id
    assert str(info.exception) == "async boom"
    stats = bus.stats()
    assert stats["async_handler_errors"] == 1
    assert stats["handler_errors"] == 1


@pytest.mark.asyncio
async def test_publish_async_awaits_handlers_concurrently(bus: EventBus) -> None:
    """publish_async returns after every async handler of the event finished."""
    finished: list[str] = []

    async def slow(e: Event[Any]) -> None:
        await asyncio.sleep(0.05)
        finished.append("slow")

    async def fast(e: Event[Any]) -> None:
        finished.append("fast")

    bus.subscribe(ET.TASK_STARTED, slow)
    bus.subscribe(ET.TASK_STARTED, fast)
    bus.subscribe(ET.TASK_STARTED, lambda e: finished.append("sync"))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await bus.publish_async(ET.TASK_STARTED)
    elapsed = loop.time() - t0
    assert sorted(finished) == ["fast", "slow", "sync"]
    assert elapsed < 0.5  # concurrent, not 2 x sequential sleeps plus overhead


@pytest.mark.asyncio
async def test_publish_async_timeout_cancels_and_counts(bus: EventBus) -> None:
    """Handlers still running at the timeout are cancelled and counted."""
    cancelled = asyncio.Event()

    async def stuck(e: Event[Any]) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe(ET.TASK_STARTED, stuck)
    await bus.publish_async(ET.TASK_STARTED, timeout=0.05)
    assert cancelled.is_set()
    assert bus.stats()["async_handler_timeouts"] == 1
    with pytest.raises(ValueError, match="timeout"):
        await bus.publish_async(ET.TASK_STARTED, timeout=0)


@pytest.mark.asyncio
async def test_async_handler_causation_and_once(bus: EventBus) -> None:
    """Events published from an async handler carry its event as parent; once works."""

    async def reply(e: Event[Any]) -> None:
        bus.publish(ET.TASK_COMPLETED)

    tok = bus.subscribe(ET.TASK_STARTED, reply, once=True)
    parent = await bus.publish_async(ET.TASK_STARTED, correlation_id="r1")
    await bus.publish_async(ET.TASK_STARTED)
    (child,) = bus.history(ET.TASK_COMPLETED)
    assert child.parent_id == parent
    assert child.correlation_id == "r1"
    assert not tok.active


@pytest.mark.asyncio
async def test_weak_async_method_dies_with_owner(bus: EventBus) -> None:
    """A component's async bound method is weak like a sync one."""
    import gc

    got: list[Any] = []

    class Comp:
        async def on(self, e: Event[Any]) -> None:
            got.append(e.data)

    c = Comp()
    tok = bus.subscribe(ET.TASK_STARTED, c.on)
    await bus.publish_async(ET.TASK_STARTED, 1)
    del c
    gc.collect()
    await bus.publish_async(ET.TASK_STARTED, 2)
    assert got == [1]
    assert not tok.active


def test_a_once_handler_of_a_closed_loop_is_counted(bus: EventBus) -> None:
    """once=True: the delivery that finds the loop closed still counts the handler."""

    async def handler(e: Event[Any]) -> None:
        pass

    async def subscribe() -> Subscription:
        return bus.subscribe(ET.TASK_STARTED, handler, once=True)

    token = asyncio.run(subscribe())
    bus.publish(ET.TASK_STARTED)
    bus.publish(ET.TASK_STARTED)
    assert not token.active
    assert bus.stats()["async_handlers_loop_closed"] == 1

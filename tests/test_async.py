"""Tests for async handlers and publish_async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType, HandlerFailure, InvalidHandlerError

ET = EventType


def test_async_handler_needs_a_running_loop(bus: EventBus) -> None:
    """Subscribing a coroutine function outside a running loop is a clear error."""

    async def handler(e: Event[Any]) -> None:
        pass

    with pytest.raises(InvalidHandlerError, match="running event loop"):
        bus.subscribe(ET.TASK_STARTED, handler)
    assert bus.subscriber_count() == 0


def test_coroutine_filters_and_middleware_are_refused(bus: EventBus) -> None:
    """Filters and middleware must be plain functions: a coroutine one would always be truthy."""

    async def afilter(e: Event[Any]) -> bool:
        return False

    with pytest.raises(InvalidHandlerError, match="coroutine"):
        bus.subscribe(ET.TASK_STARTED, lambda e: None, filter=afilter)
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

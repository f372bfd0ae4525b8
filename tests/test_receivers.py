"""Tests for receivers: filter and once, awaitables returned by sync handlers, names and entries."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType, HandlerFailure
from atlas_events.exceptions import HandlerLoopError, InvalidHandlerError

ET = EventType


def logged(fn: Callable[[Event[Any]], Any]) -> Callable[[Event[Any]], Any]:
    """A typical sync decorator: it hides that ``fn`` is a coroutine function."""

    @functools.wraps(fn)
    def wrapper(e: Event[Any]) -> Any:
        return fn(e)

    return wrapper


class Saver:
    """A component whose bound-method handler returns a coroutine."""

    def __init__(self) -> None:
        self.saved: list[Any] = []

    async def save(self, e: Event[Any]) -> None:
        await asyncio.sleep(0)
        self.saved.append(e.data)

    def on_event(self, e: Event[Any]) -> Awaitable[None]:
        return self.save(e)


@pytest.mark.asyncio
async def test_lambda_and_decorated_coroutines_run_and_are_awaited(bus: EventBus) -> None:
    """A lambda returning a coroutine and an async def under a sync decorator both run."""
    ran: list[tuple[str, Any]] = []

    async def save(e: Event[Any]) -> None:
        await asyncio.sleep(0)
        ran.append(("save", e.data))

    @logged
    async def audit(e: Event[Any]) -> None:
        await asyncio.sleep(0)
        ran.append(("audit", e.data))

    bus.subscribe(ET.TASK_COMPLETED, lambda e: save(e))
    bus.subscribe(ET.TASK_COMPLETED, audit)
    await bus.publish_async(ET.TASK_COMPLETED, "t1", timeout=5)
    assert sorted(ran) == [("audit", "t1"), ("save", "t1")]  # awaited by publish_async


@pytest.mark.asyncio
async def test_returned_coroutine_of_weak_method_filter_and_once_paths(bus: EventBus) -> None:
    """The fast weak entry and the filter/once path both schedule a returned coroutine."""
    weak = Saver()
    filtered = Saver()
    bus.subscribe(ET.TASK_STARTED, weak.on_event)
    bus.subscribe(ET.TASK_STARTED, filtered.on_event, filter=lambda e: e.data != "skip", once=True)
    await bus.publish_async(ET.TASK_STARTED, "skip")
    await bus.publish_async(ET.TASK_STARTED, "go")
    await bus.publish_async(ET.TASK_STARTED, "again")
    assert weak.saved == ["skip", "go", "again"]
    assert filtered.saved == ["go"]


@pytest.mark.asyncio
async def test_returned_coroutine_from_another_thread_runs_on_the_subscribers_loop(
    bus: EventBus,
) -> None:
    """Published from a worker thread, the coroutine runs on the loop that subscribed."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    where: list[bool] = []

    async def work(e: Event[Any]) -> None:
        where.append(asyncio.get_running_loop() is loop)
        done.set()

    bus.subscribe(ET.TASK_STARTED, lambda e: work(e))
    worker = threading.Thread(target=bus.publish, args=(ET.TASK_STARTED,))
    worker.start()
    worker.join(10)
    await asyncio.wait_for(done.wait(), 10)
    assert where == [True]


@pytest.mark.asyncio
async def test_failure_inside_a_returned_coroutine_is_a_handler_error(bus: EventBus) -> None:
    """The returned coroutine's exception is reported like an async handler's."""
    errors: list[Event[Any]] = []

    async def broken(e: Event[Any]) -> None:
        raise ValueError("inside the coroutine")

    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    bus.subscribe(ET.TASK_STARTED, lambda e: broken(e))
    await bus.publish_async(ET.TASK_STARTED)
    (err,) = errors
    assert isinstance(err.data, HandlerFailure)
    assert err.data.is_async
    assert str(err.data.exception) == "inside the coroutine"


@pytest.mark.asyncio
async def test_returned_task_is_tracked(bus: EventBus) -> None:
    """A handler that returns a task it created has that task's failure reported."""
    errors: list[Event[Any]] = []

    async def broken(e: Event[Any]) -> None:
        raise KeyError("task")

    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    bus.subscribe(ET.TASK_STARTED, lambda e: asyncio.ensure_future(broken(e)))
    await bus.publish_async(ET.TASK_STARTED)
    assert [type(e.data.exception) for e in errors] == [KeyError]


def test_returned_coroutine_without_any_loop_is_reported_not_dropped(bus: EventBus) -> None:
    """No loop to run it on: HandlerLoopError as HANDLER_ERROR; the coroutine is closed."""
    errors: list[Event[Any]] = []
    started: list[Any] = []

    async def save(e: Event[Any]) -> None:
        started.append(e)

    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    bus.subscribe(ET.TASK_STARTED, lambda e: save(e))
    bus.publish(ET.TASK_STARTED)  # filterwarnings=error: a "never awaited" warning would fail
    (err,) = errors
    assert isinstance(err.data.exception, HandlerLoopError)
    assert "no event loop is running" in str(err.data.exception)
    assert started == []


def test_returned_coroutine_without_loop_raises_on_a_strict_bus(strict_bus: EventBus) -> None:
    """With raise_handler_errors=True the unschedulable coroutine fails the publish."""

    async def save(e: Event[Any]) -> None:
        pass

    strict_bus.subscribe(ET.TASK_STARTED, lambda e: save(e))
    with pytest.raises(ExceptionGroup) as info:
        strict_bus.publish(ET.TASK_STARTED)
    assert isinstance(info.value.exceptions[0].__cause__, HandlerLoopError)


def test_returned_coroutine_of_a_closed_loop_is_reported(bus: EventBus) -> None:
    """A sync handler subscribed on a loop that has since closed: reported, not dropped."""
    errors: list[Event[Any]] = []

    async def save(e: Event[Any]) -> None:
        pass

    async def subscribe() -> None:
        bus.subscribe(ET.TASK_STARTED, lambda e: save(e))

    asyncio.run(subscribe())
    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    bus.publish(ET.TASK_STARTED)
    (err,) = errors
    assert "closed" in str(err.data.exception)


def test_non_awaitable_return_values_are_ignored(bus: EventBus) -> None:
    """Handlers may return values (list.append returns None, others return data)."""
    errors: list[Event[Any]] = []
    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    bus.subscribe(ET.TASK_STARTED, lambda e: 42)
    bus.subscribe(ET.TASK_STARTED, lambda e: "text", filter=lambda e: True)
    bus.publish(ET.TASK_STARTED)
    assert errors == []
    assert bus.stats()["handler_errors"] == 0


@pytest.mark.asyncio
async def test_an_awaitable_that_cannot_be_scheduled_is_reported(bus: EventBus) -> None:
    """A returned future of another loop cannot run here: HANDLER_ERROR, not a lost callback."""
    errors: list[Event[Any]] = []
    other = asyncio.new_event_loop()
    try:
        foreign = other.create_future()
        bus.subscribe(ET.HANDLER_ERROR, errors.append)
        bus.subscribe(ET.TASK_STARTED, lambda e: foreign)
        bus.publish(ET.TASK_STARTED)
        await asyncio.sleep(0.01)
        (err,) = errors
        assert isinstance(err.data.exception, ValueError)
        assert err.data.is_async
    finally:
        other.close()


def test_generator_function_handlers_and_filters_are_refused(bus: EventBus) -> None:
    """A (async) generator function's body would never run when called: refused at subscribe.

    Before, `def h(e): ...; yield` was accepted and silently did nothing
    for every event; as a filter, its generator object let every event through.
    """

    def gen(e: Event[Any]) -> Any:
        yield e

    async def agen(e: Event[Any]) -> Any:
        yield e

    class Comp:
        def gen_method(self, e: Event[Any]) -> Any:
            yield e

    for fn in (gen, agen, Comp().gen_method, functools.partial(gen)):
        with pytest.raises(InvalidHandlerError, match="generator"):
            bus.subscribe(EventType.TASK_STARTED, fn)
        with pytest.raises(InvalidHandlerError, match="generator"):
            bus.subscribe(EventType.TASK_STARTED, print, filter=fn)
    assert bus.subscriber_count() == 0


def test_filter_and_once(bus: EventBus) -> None:
    """filter= selects events; once=True delivers one event then unsubscribes."""
    evens: list[int] = []
    first: list[int] = []
    bus.subscribe(ET.TASK_STARTED, lambda e: evens.append(e.data), filter=lambda e: e.data % 2 == 0)
    tok = bus.subscribe(ET.TASK_STARTED, lambda e: first.append(e.data), once=True)
    for i in range(5):
        bus.publish(ET.TASK_STARTED, i)
    assert evens == [0, 2, 4]
    assert first == [0]
    assert not tok.active
    assert tok() is False
    assert bus.stats()["delivered"] == 3 + 1


def test_once_with_filter_waits_for_a_match(bus: EventBus) -> None:
    """A once+filter handler fires on the first *matching* event only."""
    got: list[int] = []
    bus.subscribe(
        ET.TASK_STARTED, lambda e: got.append(e.data), once=True, filter=lambda e: e.data > 2
    )
    for i in range(6):
        bus.publish(ET.TASK_STARTED, i)
    assert got == [3]

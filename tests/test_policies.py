"""Handler policies: async timeouts, slow-handler warnings, removal after repeated failures."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import weakref
from typing import Any, cast

import pytest

from atlas_events import (
    Event,
    EventBus,
    EventType,
    HandlerFailure,
    HandlerRemoved,
    HandlerTimeoutError,
)
from atlas_events._policies import HandlerPolicy
from atlas_events._receivers import Receiver
from atlas_events._wrappers import HandlerInfo
from atlas_events.exceptions import InvalidOptionError

from .conftest import collect


def _errors(bus: EventBus) -> list[HandlerFailure]:
    failures: list[HandlerFailure] = []
    bus.subscribe(EventType.HANDLER_ERROR, lambda e: failures.append(e.data))
    return failures


@pytest.mark.asyncio
async def test_async_timeout_reports_a_handler_timeout_error(bus: EventBus) -> None:
    """An async handler over its timeout is cancelled; HANDLER_ERROR carries the timeout error."""
    failures = _errors(bus)
    cancelled = asyncio.Event()

    async def stuck(event: Event[Any]) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe(EventType.TASK_STARTED, stuck, timeout=0.05)
    await bus.publish_async(EventType.TASK_STARTED, timeout=20)
    assert cancelled.is_set()
    [failure] = failures
    assert isinstance(failure.exception, HandlerTimeoutError)
    assert isinstance(failure.exception, TimeoutError)
    assert failure.exception.timeout == 0.05
    assert failure.handler.endswith("stuck")
    assert failure.is_async
    assert bus.stats()["handler_timeouts"] == 1
    assert bus.stats()["async_handler_timeouts"] == 0


@pytest.mark.asyncio
async def test_handler_raising_timeout_error_itself_is_not_relabelled(bus: EventBus) -> None:
    """A TimeoutError the handler raises on its own is reported as is, not as our timeout."""
    failures = _errors(bus)

    async def own(event: Event[Any]) -> None:
        raise TimeoutError("upstream")

    bus.subscribe(EventType.TASK_STARTED, own, timeout=10)
    await bus.publish_async(EventType.TASK_STARTED)
    [failure] = failures
    assert type(failure.exception) is TimeoutError
    assert bus.stats()["handler_timeouts"] == 0


@pytest.mark.asyncio
async def test_fast_async_handler_within_timeout(bus: EventBus) -> None:
    """A handler that finishes in time runs normally and returns its result to the task."""
    seen: list[Any] = []

    async def quick(event: Event[Any]) -> None:
        seen.append(event.data)

    bus.subscribe(EventType.TASK_STARTED, quick, timeout=10)
    await bus.publish_async(EventType.TASK_STARTED, 7)
    assert seen == [7]
    assert bus.stats()["handler_errors"] == 0


def test_bad_policy_values_are_refused_before_subscribing(bus: EventBus) -> None:
    """Non-positive limits, bools or a timeout on a sync handler: ValueError, nothing added."""
    bad: list[dict[str, Any]] = [
        {"timeout": 0},
        {"slow_threshold": -1},
        {"slow_threshold": float("nan")},
        {"max_failures": 0},
        {"max_failures": 1.5},
        {"timeout": 1.0},  # a sync handler
    ]
    for options in bad:
        with pytest.raises(ValueError, match=next(iter(options))):
            bus.subscribe(EventType.TASK_STARTED, print, **options)
    with pytest.raises(TypeError, match="slow_threshold"):
        bus.subscribe(EventType.TASK_STARTED, print, slow_threshold=True)
    assert bus.subscriber_count() == 0


@pytest.mark.parametrize("option", ["timeout", "slow_threshold"])
@pytest.mark.parametrize("seconds", [float("inf"), 1e300, 10**400], ids=["inf", "1e300", "10**400"])
def test_policy_seconds_beyond_what_a_wait_can_take_are_refused(
    bus: EventBus, option: str, seconds: Any
) -> None:
    """An infinite or huge limit raises ValueError naming it, not an OverflowError per event."""

    async def handler(event: Event[Any]) -> None:
        pass

    with pytest.raises(ValueError, match=option):
        bus.subscribe(EventType.TASK_STARTED, handler, **{option: seconds})
    assert bus.subscriber_count() == 0


def test_slow_sync_handler_is_logged_and_counted(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync handler slower than slow_threshold logs a warning with context and is counted."""

    def slow(event: Event[Any]) -> None:
        time.sleep(0.05)

    def fast(event: Event[Any]) -> None:
        pass

    bus.subscribe(EventType.TASK_STARTED, slow, slow_threshold=0.01)
    bus.subscribe(EventType.TASK_STARTED, fast, slow_threshold=5.0)
    with caplog.at_level(logging.WARNING, logger="atlas_events"):
        event_id = bus.publish(EventType.TASK_STARTED, correlation_id="run-1")
    [record] = [r for r in caplog.records if "slow handler" in r.getMessage()]
    assert "slow" in record.getMessage()
    assert record.atlas_event_id == event_id  # type: ignore[attr-defined]
    assert record.atlas_correlation_id == "run-1"  # type: ignore[attr-defined]
    assert record.atlas_handler.endswith("slow")  # type: ignore[attr-defined]
    assert bus.stats()["slow_handlers"] == 1


@pytest.mark.asyncio
async def test_slow_async_handler_is_counted(bus: EventBus) -> None:
    """An async handler's whole run is measured against slow_threshold."""

    async def slow(event: Event[Any]) -> None:
        await asyncio.sleep(0.05)

    bus.subscribe(EventType.TASK_STARTED, slow, slow_threshold=0.01)
    await bus.publish_async(EventType.TASK_STARTED)
    assert bus.stats()["slow_handlers"] == 1


def test_removed_after_consecutive_failures(bus: EventBus) -> None:
    """After max_failures failures in a row the handler is unsubscribed and HANDLER_REMOVED sent."""
    removed: list[Event[HandlerRemoved]] = []
    bus.subscribe(EventType.HANDLER_REMOVED, removed.append)
    failures = _errors(bus)
    outcomes = iter([False, False, True, False, False, False, False])

    def flaky(event: Event[Any]) -> None:
        if not next(outcomes):
            raise RuntimeError("down")

    token = bus.subscribe(EventType.TASK_STARTED, flaky, max_failures=3)
    for _ in range(6):
        bus.publish(EventType.TASK_STARTED)
    # F F ok F F F -> removed on the 6th event; the success reset the streak
    assert len(failures) == 5
    assert not token.active
    [announcement] = removed
    assert announcement.data.failures == 3
    assert announcement.data.handler.endswith("flaky")
    assert announcement.data.event_type is EventType.TASK_STARTED
    assert isinstance(announcement.data.last_error, RuntimeError)
    assert bus.stats()["handlers_removed"] == 1
    bus.publish(EventType.TASK_STARTED)
    assert len(failures) == 5


@pytest.mark.asyncio
async def test_async_handler_removed_after_timeouts(bus: EventBus) -> None:
    """Timeouts count as failures of an async handler."""
    removed: list[Event[HandlerRemoved]] = []
    bus.subscribe(EventType.HANDLER_REMOVED, removed.append)

    async def hangs(event: Event[Any]) -> None:
        await asyncio.sleep(30)

    token = bus.subscribe(EventType.TASK_STARTED, hangs, timeout=0.02, max_failures=2)
    await bus.publish_async(EventType.TASK_STARTED, timeout=20)
    assert token.active
    await bus.publish_async(EventType.TASK_STARTED, timeout=20)
    assert not token.active
    assert isinstance(removed[0].data.last_error, HandlerTimeoutError)


def test_policy_wrapper_does_not_pin_a_weak_owner(bus: EventBus) -> None:
    """A bound method subscribed with a policy stays weakly held: deleting the owner ends it."""

    class Worker:
        def __init__(self) -> None:
            self.seen = 0

        def handle(self, event: Event[Any]) -> None:
            self.seen += 1

    w = Worker()
    token = bus.subscribe(EventType.TASK_STARTED, w.handle, slow_threshold=1.0, max_failures=2)
    bus.publish(EventType.TASK_STARTED)
    assert w.seen == 1
    assert token.description.startswith(f"{__name__}.")
    assert "<locals>.Worker.handle of " in token.description
    del w
    collect()
    bus.publish(EventType.TASK_STARTED)
    assert not token.active
    assert bus.subscriber_count() == 0


def test_handler_error_names_the_original_handler(bus: EventBus) -> None:
    """A failing wrapped handler is reported under its own name, not the wrapper's."""
    failures = _errors(bus)

    def broken(event: Event[Any]) -> None:
        raise ValueError("x")

    bus.subscribe(EventType.TASK_STARTED, broken, max_failures=5)
    bus.publish(EventType.TASK_STARTED)
    assert failures[0].handler == f"{__name__}.{broken.__qualname__}"


def test_no_policy_means_no_wrapper(bus: EventBus) -> None:
    """Without policy options the handler is subscribed as is (the hot path pays nothing)."""

    def plain(event: Event[Any]) -> None:
        pass

    bus.subscribe(EventType.TASK_STARTED, plain)
    [rec] = bus.get_signal(EventType.TASK_STARTED).receivers.values()
    assert cast(Receiver, rec).resolve() is plain


@pytest.mark.parametrize("option", ["timeout", "slow_threshold"])
@pytest.mark.parametrize("value", [math.inf, math.nan, 10**100, 2**63, 0, -1.5, True, "1"])
def test_policy_seconds_must_be_finite_and_in_range(option: str, value: Any) -> None:
    """``subscribe(timeout=, slow_threshold=)`` refuse non-finite or huge seconds (named).

    The same rule as every other seconds option (``check_seconds``):
    nothing is subscribed.
    """
    bus = EventBus(name="policies")

    async def handler(event: Event[Any]) -> None:
        pass

    with pytest.raises(InvalidOptionError, match=option):
        bus.subscribe(EventType.TASK_STARTED, handler, **{option: value})
    assert bus.subscriber_count() == 0
    bus.close()


@pytest.mark.parametrize(
    "options",
    [{"slow_threshold": 5.0}, {"max_failures": 2}, {"timeout": 5.0}],
    ids=["slow_threshold", "max_failures", "timeout"],
)
def test_policy_on_a_partial_binding_a_method_does_not_pin_its_owner(
    bus: EventBus, options: dict[str, Any]
) -> None:
    """functools.partial(Cls.method, obj, extra) is held weakly like obj.method, policy or not.

    Before, a policy wrapped the partial in a strong closure, so obj lived forever.
    """

    class Worker:
        def __init__(self) -> None:
            self.seen: list[tuple[str, Any]] = []

        async def handle(self, tag: str, event: Event[Any]) -> None:
            self.seen.append((tag, event.data))

        def handle_sync(self, tag: str, event: Event[Any]) -> None:
            self.seen.append((tag, event.data))

    worker = Worker()
    method = Worker.handle if "timeout" in options else Worker.handle_sync

    async def run() -> None:
        await bus.publish_async(EventType.TASK_STARTED, 1, timeout=20)

    token = bus.subscribe(EventType.TASK_STARTED, functools.partial(method, worker, "t"), **options)
    asyncio.run(run())
    assert worker.seen == [("t", 1)]  # the extra argument still reaches the method
    ref = weakref.ref(worker)
    del worker
    collect()
    assert ref() is None
    assert not token.active
    assert bus.subscriber_count() == 0


def test_limit_reached_before_the_policy_knew_its_subscription_still_removes(
    bus: EventBus,
) -> None:
    """Failures that reach max_failures before bind() (another thread publishing while
    subscribe() returns) do not disable the limit: the next failure removes the handler.
    """
    policy = HandlerPolicy(max_failures=2)
    info = HandlerInfo(bus, EventType.TASK_STARTED, "tests.failing", is_async=False)

    def failing(target: Any, event: Event[Any]) -> None:
        raise RuntimeError("down")

    call = policy(failing, info)
    event = Event.create(EventType.TASK_STARTED)
    for _ in range(2):  # the limit is reached while the policy has no subscription yet
        with pytest.raises(RuntimeError):
            call(None, event)
    token = bus.subscribe(EventType.TASK_STARTED, print)
    policy.bind(token)
    with pytest.raises(RuntimeError):
        call(None, event)
    assert not token.active
    assert bus.stats()["handlers_removed"] == 0  # the policy counts on its own counters
    assert policy.counters.removed == 1

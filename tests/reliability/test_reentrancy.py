"""Re-entrancy: handlers that use the bus while it dispatches to them.

Handlers publish, subscribe, unsubscribe themselves, add middleware and
close their own scope during dispatch -- on one thread, and on several
threads at once -- without deadlock and with the documented semantics.
Runaway re-publishing stops at ``max_depth`` with a clear error, and the bus
stays usable afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import attrs
import pytest

from atlas_events import (
    ANY,
    Event,
    EventBus,
    EventType,
    HandlerError,
    HandlerFailure,
    RecursionDepthError,
    Subscription,
)
from atlas_events.exceptions import BusClosedError

from .conftest import Workers

ET = EventType


def _types(bus: EventBus) -> list[EventType]:
    return [e.type for e in bus.history()]  # type: ignore[misc]


def test_handler_publishes_during_dispatch() -> None:
    """A nested publish is recorded, dispatched and forwarded before the outer one resumes."""
    root = EventBus(name="root", nested="immediate")
    scope = root.scope("s")
    calls: list[str] = []

    def outer(event: Event[Any]) -> None:
        calls.append("outer")
        nested = scope.publish(ET.TASK_COMPLETED, "nested")
        assert root.history(ET.TASK_COMPLETED)[-1].id == nested  # already forwarded up
        calls.append("outer done")

    scope.subscribe(ET.TASK_STARTED, outer)
    scope.subscribe(ET.TASK_STARTED, lambda e: calls.append("after outer"))
    scope.subscribe(ET.TASK_COMPLETED, lambda e: calls.append("nested"))
    root.subscribe(ANY, lambda e: calls.append(f"root {e.data}"))

    outer_id = scope.publish(ET.TASK_STARTED, "outer")

    assert calls == [
        "outer",
        "nested",
        "root nested",
        "outer done",
        "after outer",
        "root outer",
    ]
    nested_ev = scope.history(ET.TASK_COMPLETED)[0]
    assert nested_ev.parent_id == outer_id  # causation
    assert [e.seq for e in scope.history()] == [1, 2]  # outer recorded first
    assert [e.data for e in root.history()] == ["nested", "outer"]  # forwarded in that order
    root.close()


def test_handler_subscribing_during_dispatch_does_not_get_the_event_in_flight() -> None:
    """A handler added during a dispatch receives the next event, not the current one."""
    bus = EventBus(name="sub")
    late: list[Any] = []

    def subscriber(event: Event[Any]) -> None:
        if event.data == 1:
            bus.subscribe(ET.TASK_STARTED, lambda e: late.append(("typed", e.data)))
            bus.subscribe(ANY, lambda e: late.append(("any", e.data)))

    bus.subscribe(ET.TASK_STARTED, subscriber)
    bus.publish(ET.TASK_STARTED, 1)
    assert late == []
    bus.publish(ET.TASK_STARTED, 2)
    assert late == [("typed", 2), ("any", 2)]
    bus.close()


def test_handler_unsubscribes_itself() -> None:
    """A handler's own token works inside the handler: called once, never again."""
    bus = EventBus(name="self-unsub")
    calls: list[Any] = []
    results: list[bool] = []
    token: Subscription | None = None

    def once_by_hand(event: Event[Any]) -> None:
        calls.append(event.data)
        assert token is not None
        results.append(token())
        results.append(token())

    token = bus.subscribe(ET.TASK_STARTED, once_by_hand)
    other: list[Any] = []
    bus.subscribe(ET.TASK_STARTED, lambda e: other.append(e.data))
    for i in range(3):
        bus.publish(ET.TASK_STARTED, i)
    assert calls == [0]
    assert results == [True, False]
    assert other == [0, 1, 2]  # the handler after it still ran, every time
    assert bus.subscriber_count(ET.TASK_STARTED) == 1
    bus.close()


def test_handler_unsubscribing_others_stops_them_after_the_dispatch_in_flight() -> None:
    """Handlers unsubscribed by an earlier handler are never called for later events."""
    bus = EventBus(name="unsub-others")
    calls: list[str] = []
    tokens: dict[str, Subscription] = {}

    results: list[bool] = []

    def first(event: Event[Any]) -> None:
        results.append(tokens["plain"]())
        results.append(tokens["filtered"]())

    bus.subscribe(ET.TASK_STARTED, first)
    tokens["plain"] = bus.subscribe(ET.TASK_STARTED, lambda e: calls.append(f"plain {e.data}"))
    tokens["filtered"] = bus.subscribe(
        ET.TASK_STARTED, lambda e: calls.append(f"filtered {e.data}"), filter=lambda e: True
    )
    bus.publish(ET.TASK_STARTED, 1)
    bus.publish(ET.TASK_STARTED, 2)
    assert results == [True, True, False, False]
    assert "plain 2" not in calls
    assert "filtered 2" not in calls
    assert bus.subscriber_count() == 1
    assert bus.stats()["handler_errors"] == 0
    bus.close()


def test_handler_unsubscribed_during_dispatch_misses_the_event_in_flight() -> None:
    """Blinker's rule: a receiver disconnected mid-send is not called any more."""
    bus = EventBus(name="unsub-in-flight")
    calls: list[str] = []
    tokens: dict[str, Subscription] = {}
    bus.subscribe(ET.TASK_STARTED, lambda e: tokens["plain"]())
    tokens["plain"] = bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("plain"))
    bus.publish(ET.TASK_STARTED)
    bus.close()
    assert calls == []


def test_handler_adds_middleware_during_dispatch() -> None:
    """Middleware added by a handler applies to the next publishes, not to the one in flight."""
    bus = EventBus(name="mw", nested="immediate")
    seen: list[tuple[Any, bool]] = []

    def tag(event: Event[Any]) -> Event[Any]:
        return attrs.evolve(event, metadata={**event.metadata, "tagged": True})

    tokens: list[Subscription] = []

    def adder(event: Event[Any]) -> None:
        if event.data == "first":
            tokens.append(bus.add_middleware(tag))
            bus.publish(ET.TASK_COMPLETED, "nested")

    bus.subscribe(ET.TASK_STARTED, adder)
    bus.subscribe(ANY, lambda e: seen.append((e.data, "tagged" in e.metadata)))
    bus.publish(ET.TASK_STARTED, "first")
    bus.publish(ET.TASK_STARTED, "second")
    assert seen == [("nested", True), ("first", False), ("second", True)]
    assert tokens[0]() is True
    bus.publish(ET.TASK_STARTED, "third")
    assert seen[-1] == ("third", False)
    bus.close()


def test_handler_closes_its_own_scope() -> None:
    """Closing a scope from its own handler: the event in flight completes, then it is closed."""
    root = EventBus(name="root")
    scope = root.scope("s")
    calls: list[str] = []
    root_seen: list[Any] = []

    def closer(event: Event[Any]) -> None:
        calls.append("closer")
        scope.close()
        calls.append(f"closed={scope.closed}")

    scope.subscribe(ET.TASK_STARTED, closer)
    root.subscribe(ET.TASK_STARTED, lambda e: root_seen.append(e.data))
    scope.publish(ET.TASK_STARTED, "in flight")

    assert calls == ["closer", "closed=True"]
    assert root_seen == ["in flight"]  # the publish in progress completed (forwarded)
    assert scope.history()[-1].data == "in flight"
    assert scope.stats()["subscribers"] == {}
    assert root.stats()["children"] == 0
    with pytest.raises(BusClosedError):
        scope.publish(ET.TASK_STARTED, "after")
    root.publish(ET.TASK_STARTED, "root still works")
    assert root_seen == ["in flight", "root still works"]
    root.close()


def _runaway(bus: EventBus, publish_on: Callable[[], EventBus] | None = None) -> None:
    def again(event: Event[Any]) -> None:
        (publish_on() if publish_on else bus).publish(ET.TASK_STARTED, cast(int, event.data) + 1)

    bus.subscribe(ET.TASK_STARTED, again)


@pytest.mark.parametrize("max_depth", [64, 10])
def test_runaway_recursion_stops_at_the_depth_limit(max_depth: int) -> None:
    """Re-publishing forever stops at ``max_depth`` with one clear report; the bus stays usable."""
    bus = EventBus(max_depth=max_depth, name="runaway")
    errors: list[Event[Any]] = []
    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    _runaway(bus)

    bus.publish(ET.TASK_STARTED, 1)

    assert [e.data for e in bus.history(ET.TASK_STARTED)] == list(range(1, max_depth + 1))
    assert len(errors) == 1
    failure = cast(HandlerFailure, errors[0].data)
    assert isinstance(failure.exception, RecursionDepthError)
    assert failure.exception.depth == max_depth + 1
    assert failure.exception.limit == max_depth
    assert "max_depth" in str(failure.exception)
    assert "re-publishing in a loop" in str(failure.exception)
    # Usable afterwards: a fresh publish runs the whole chain again, from depth 0.
    errors.clear()
    bus.publish(ET.TASK_STARTED, 1)
    assert len(errors) == 1
    stats = bus.stats()
    assert stats["published"] == 2 * (max_depth + 1)  # max_depth events + 1 report, twice
    assert stats["handler_errors"] == 2
    bus.close()


def test_runaway_recursion_raises_with_raise_handler_errors() -> None:
    """With ``raise_handler_errors``, the top-level publish raises, RecursionDepthError inside."""
    bus = EventBus(max_depth=8, raise_handler_errors=True, name="strict", nested="immediate")
    _runaway(bus)
    with pytest.raises(ExceptionGroup) as info:
        bus.publish(ET.TASK_STARTED, 1)
    err: BaseException = info.value
    levels = 0
    while isinstance(err, ExceptionGroup):
        (inner,) = err.exceptions
        assert isinstance(inner, HandlerError)
        err = inner.exception
        levels += 1
    assert isinstance(err, RecursionDepthError)
    assert levels == 8
    assert bus.stats()["published"] == 8
    bus.close()


def test_ping_pong_between_scopes_stops_at_the_depth_limit() -> None:
    """Depth counts across buses: a scope and its root re-publishing to each other stop too."""
    root = EventBus(max_depth=20, name="root")
    scope = root.scope("s")
    errors: list[Event[Any]] = []
    root.subscribe(ET.HANDLER_ERROR, errors.append)
    scope.subscribe(
        ET.TASK_STARTED,
        lambda e: root.publish(ET.TASK_COMPLETED, cast(int, e.data) + 1, propagate=False),
    )
    root.subscribe(
        ET.TASK_COMPLETED,
        lambda e: scope.publish(ET.TASK_STARTED, cast(int, e.data) + 1) if e.scope == () else None,
    )
    scope.publish(ET.TASK_STARTED, 0)
    assert len(errors) == 1
    assert isinstance(cast(HandlerFailure, errors[0].data).exception, RecursionDepthError)
    assert scope.publish(ET.AGENT_STARTED)  # both still usable
    assert root.publish(ET.AGENT_STARTED)
    root.close()


def test_error_handler_that_republishes_the_failing_event_stops() -> None:
    """A HANDLER_ERROR handler that re-triggers the failure loops only up to the limit."""
    bus = EventBus(max_depth=16, name="error-loop")

    def failing(event: Event[Any]) -> None:
        raise ValueError("fails every time")

    bus.subscribe(ET.TASK_STARTED, failing)
    bus.subscribe(ET.HANDLER_ERROR, lambda e: bus.publish(ET.TASK_STARTED, "retry"))
    bus.publish(ET.TASK_STARTED, "first")
    stats = bus.stats()
    assert stats["handler_errors"] >= 8
    assert stats["published"] < 100
    bus.publish(ET.AGENT_STARTED)  # usable afterwards
    assert bus.history(limit=1)[0].type is ET.AGENT_STARTED
    bus.close()


THREADS = 4
PER_THREAD = 5_000


@pytest.mark.timeout(120)
def test_reentrant_handlers_on_many_threads(workers: Workers) -> None:
    """4 threads x 5,000 publishes whose handlers publish, (un)subscribe and add middleware."""
    root = EventBus(history_limit=50, name="root", nested="immediate")
    scope = root.scope("s", history_limit=50)
    nested_seen = [0] * THREADS
    temp_seen = [0] * THREADS
    lock = threading.Lock()

    def republisher(event: Event[Any]) -> None:
        i, k = cast("tuple[int, int]", event.data)
        if k % 4 == 1:
            scope.publish(ET.TASK_COMPLETED, (i, k))

    def on_nested(event: Event[Any]) -> None:
        with lock:
            nested_seen[cast("tuple[int, int]", event.data)[0]] += 1

    def churner(event: Event[Any]) -> None:
        i, k = cast("tuple[int, int]", event.data)
        token: Subscription | None = None

        def temp(e: Event[Any]) -> None:
            assert token is not None
            token()  # unsubscribes itself
            with lock:
                temp_seen[i] += 1

        if k % 5 == 0:
            token = root.subscribe(ET.AGENT_STARTED, temp, filter=lambda e: e.data == (i, k))
            root.publish(ET.AGENT_STARTED, (i, k))
            assert token() is False  # already unsubscribed by itself
        if k % 50 == 0:
            root.add_middleware(lambda e: e)()

    scope.subscribe(ET.TASK_STARTED, republisher)
    root.subscribe(ET.TASK_COMPLETED, on_nested)
    root.subscribe(ET.TASK_STARTED, churner)

    def publisher(i: int) -> None:
        for k in range(PER_THREAD):
            (scope if k % 2 else root).publish(ET.TASK_STARTED, (i, k))

    for i in range(THREADS):
        workers.start(publisher, i, name=f"publisher-{i}")
    workers.join(timeout=90)

    # Odd k are published on the scope, where every other one is re-published.
    assert nested_seen == [PER_THREAD // 4] * THREADS
    assert temp_seen == [PER_THREAD // 5] * THREADS
    assert root.subscriber_count() == 2
    assert root.stats()["middleware"] == 0
    assert root.stats()["handler_errors"] == scope.stats()["handler_errors"] == 0

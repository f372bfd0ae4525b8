"""Garbage collection: subscriptions and components come and go without leaks.

* 100,000 subscribe / unsubscribe cycles (every kind of handler, on a root
  and a scope, with publishes in between) leave the registry empty and grow
  traced memory by less than 1 MB.
* 10,000 short-lived components whose bound methods are subscribed (weakly,
  by default) are called while alive, never after, and leave the registry
  empty and memory flat -- half of them are in reference cycles, so only the
  cycle collector frees them.
* A handler error kept in history (a ``HANDLER_ERROR`` event carries the
  exception) does not keep a weakly subscribed component alive.
* Finalizers that unsubscribe (``__del__`` calling a token, abandoned
  streams) may run at any allocation, even inside the bus's own registry
  operations, without deadlocking.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import weakref
from collections.abc import Iterator
from typing import Any, ClassVar, cast

import pytest

from atlas_events import ANY, Event, EventBus, EventType, HandlerFailure, Subscription

from .conftest import Workers, collect

ET = EventType
MB = 1024 * 1024
CYCLES = 100_000
COMPONENTS = 10_000


@pytest.fixture
def traced() -> Iterator[None]:
    """Trace Python allocations for the test (tracemalloc), stop afterwards."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _traced_now() -> int:
    collect()
    return tracemalloc.get_traced_memory()[0]


def _assert_registry_empty(*buses: EventBus) -> None:
    """No subscriber anywhere: stats, counts and the private blinker signals agree."""
    for bus in buses:
        assert bus.stats()["subscribers"] == {}
        assert bus.subscriber_count() == 0
        for t in (ANY, ET.TASK_STARTED, ET.TASK_COMPLETED, ET.AGENT_STARTED):
            assert bus.get_signal(t).receivers == {}, (bus, t)


class Handler:
    """A callable object handler (weak-referenceable)."""

    def __call__(self, event: Event[Any]) -> None:
        pass


class Owner:
    """A component whose bound methods are subscribed; counts its own calls."""

    alive: ClassVar[weakref.WeakSet[Owner]] = weakref.WeakSet()
    once_calls = 0

    def __init__(self, cyclic: bool = False) -> None:
        self.me = self if cyclic else None
        self.calls = 0
        Owner.alive.add(self)

    def on_event(self, event: Event[Any]) -> None:
        self.calls += 1

    def on_scoped(self, event: Event[Any]) -> None:
        self.calls += 1

    def on_once(self, event: Event[Any]) -> None:
        self.calls += 1
        Owner.once_calls += 1


@pytest.mark.slow
@pytest.mark.usefixtures("traced")
def test_subscribe_unsubscribe_cycles_leave_no_trace() -> None:
    """100,000 subscribe/unsubscribe cycles: empty registry, < 1 MB traced growth."""
    root = EventBus(history_limit=100, name="gc-root")
    scope = root.scope("s", history_limit=100)
    buses = (root, scope)
    types = (ANY, ET.TASK_STARTED, ET.TASK_COMPLETED, ET.AGENT_STARTED)
    keep = Owner()  # the owner of bound-method handlers that stays alive
    handler = Handler()
    delivered = [0]

    def count(event: Event[Any]) -> None:
        delivered[0] += 1

    def odd(event: Event[Any]) -> bool:
        return bool(cast(int, event.data) % 2)

    def cycle(i: int) -> None:
        bus = buses[i % 2]
        et = types[i % 4]
        kind = i % 7
        token: Subscription
        if kind == 0:
            token = bus.subscribe(et, count)
        elif kind == 1:
            token = bus.subscribe(et, lambda e: None)  # a new closure each time
        elif kind == 2:
            token = bus.subscribe(et, keep.on_event)  # weak bound method
        elif kind == 3:
            token = bus.subscribe(et, handler, weak=True)  # weak callable object
        elif kind == 4:
            token = bus.subscribe(et, count, once=True)
        elif kind == 5:
            token = bus.subscribe(et, count, filter=odd)
        else:
            token = bus.add_middleware(lambda e: e)
        if i % 10 == 0:
            bus.publish(ET.TASK_STARTED, i)
        token()
        assert token() is False

    for i in range(1_000):  # warm up: caches, routes, history at its limit
        cycle(i)
    before = _traced_now()
    started = time.perf_counter()
    for i in range(CYCLES):
        cycle(i)
    elapsed = time.perf_counter() - started
    growth = _traced_now() - before

    _assert_registry_empty(*buses)
    assert root.stats()["middleware"] == scope.stats()["middleware"] == 0
    assert delivered[0] > 0
    assert growth < MB, f"traced memory grew by {growth / 1024:.0f} KiB"
    print(
        f"\ngc: {CYCLES} subscribe/unsubscribe cycles in {elapsed:.1f}s (traced), "
        f"registry empty, traced memory growth {growth / 1024:+.1f} KiB"
    )


@pytest.mark.slow
@pytest.mark.usefixtures("traced")
def test_short_lived_components_leave_no_trace() -> None:
    """10,000 components with bound-method handlers: called while alive, then gone."""
    root = EventBus(history_limit=100, name="gc-root")
    scope = root.scope("s", history_limit=100)

    missed = [0]

    def lifetime(i: int) -> None:
        comp = Owner(cyclic=i % 2 == 0)
        root.subscribe(ET.TASK_STARTED, comp.on_event)
        scope.subscribe(ET.TASK_STARTED, comp.on_scoped, filter=lambda e: cast(int, e.data) >= 0)
        root.subscribe(ANY, comp.on_once, once=True)
        scope.publish(ET.TASK_STARTED, i)  # scope: on_scoped; root: on_event, on_once
        if comp.calls < 3:
            missed[0] += 1

    for i in range(500):  # warm up
        lifetime(i)
    collect()
    Owner.once_calls = 0
    before = _traced_now()
    started = time.perf_counter()
    for i in range(COMPONENTS):
        lifetime(i)
        if i % 1_000 == 999:
            collect()
    elapsed = time.perf_counter() - started
    growth = _traced_now() - before

    assert missed[0] == 0, f"{missed[0]} components missed their own event"
    # A cyclic component lives (and hears later events) until a collection;
    # its once handler still fires exactly once.
    assert Owner.once_calls == COMPONENTS
    assert len(Owner.alive) == 0
    seen: list[Event[Any]] = []
    with root.subscribe(ANY, seen.append):
        root.publish(ET.TASK_STARTED, -1)
        scope.publish(ET.TASK_STARTED, -1)
    assert len(seen) == 2
    before_skips = root.stats()["delivered"]
    root.publish(ET.TASK_STARTED, -2)
    assert root.stats()["delivered"] == before_skips  # no handler left to call
    _assert_registry_empty(root, scope)
    assert growth < MB, f"traced memory grew by {growth / 1024:.0f} KiB"
    print(
        f"\ngc: {COMPONENTS} short-lived components (half in reference cycles), "
        f"3 bound-method handlers each, in {elapsed:.1f}s (traced); registry empty, "
        f"traced memory growth {growth / 1024:+.1f} KiB"
    )


@pytest.mark.parametrize("who_raises", ["another handler", "the component", "chained"])
def test_handler_error_in_history_does_not_pin_a_weak_component(who_raises: str) -> None:
    """A HANDLER_ERROR kept in history must not keep a weakly subscribed owner alive.

    The report's traceback would (through frame locals and ``f_back``): the
    bus drops it once the ``HANDLER_ERROR`` subscribers have seen it.
    """

    class Failing:
        def on_event(self, event: Event[Any]) -> None:
            if who_raises == "the component":
                raise ValueError("boom")
            if who_raises == "chained":
                try:
                    cast("dict[str, object]", {})["missing"]
                except KeyError:
                    raise ValueError("boom") from None

    def boom(event: Event[Any]) -> None:
        raise ValueError("boom")

    bus = EventBus(name="pin")
    live_tracebacks: list[bool] = []
    bus.subscribe(
        ET.HANDLER_ERROR,
        lambda e: live_tracebacks.append(
            cast(HandlerFailure, e.data).exception.__traceback__ is not None
        ),
    )
    comp = Failing()
    if who_raises == "another handler":
        bus.subscribe(ET.TASK_STARTED, boom)
    bus.subscribe(ET.TASK_STARTED, comp.on_event)
    bus.publish(ET.TASK_STARTED)
    assert live_tracebacks == [True]  # subscribers see the traceback
    ref = weakref.ref(comp)
    del comp
    collect()
    assert ref() is None, "the component is still alive"
    assert bus.subscriber_count(ET.TASK_STARTED) == (who_raises == "another handler")
    failure = cast(HandlerFailure, bus.history(ET.HANDLER_ERROR)[0].data)
    assert isinstance(failure.exception, ValueError)  # the report itself is kept
    bus.close()


def test_publishing_inside_except_keeps_the_callers_exception_intact() -> None:
    """The bus leaves alone an exception that the publisher is still handling."""
    bus = EventBus(name="except")

    def boom(event: Event[Any]) -> None:
        raise ValueError("handler failed")

    bus.subscribe(ET.TASK_STARTED, boom)
    caught: list[BaseException] = []
    try:
        raise KeyError("caller's own")
    except KeyError as outer:
        bus.publish(ET.TASK_STARTED)
        caught.append(outer)
    assert caught[0].__traceback__ is not None
    failure = cast(HandlerFailure, bus.history(ET.HANDLER_ERROR)[0].data)
    assert failure.exception.__context__ is caught[0]
    bus.close()


class Disposer:
    """A component in a reference cycle that unsubscribes itself in ``__del__``."""

    def __init__(self, bus: EventBus) -> None:
        self.me = self
        self.token = bus.subscribe(ET.TASK_STARTED, lambda e: None)
        self.mw_token = bus.add_middleware(lambda e: e)

    def __del__(self) -> None:
        self.token()
        self.mw_token()


@pytest.fixture
def gc_every_few_allocations() -> Iterator[None]:
    """Make the collector run every few allocations, so finalizers run anywhere."""
    old = gc.get_threshold()
    gc.set_threshold(5)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _registry_churn(bus: EventBus, i: int) -> None:
    """Registry operations during which the collector (and finalizers) will run."""
    token = bus.subscribe(ET.TASK_COMPLETED, lambda e: None)
    bus.publish(ET.TASK_STARTED, i)
    bus.stats()
    token()
    bus.subscriber_count()


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("gc_every_few_allocations")
def test_finalizers_that_unsubscribe_never_deadlock(workers: Workers) -> None:
    """``__del__`` calling tokens may run inside a registry operation: no deadlock.

    With the collector running every 5 allocations, garbage ``Disposer``
    cycles are finalized in the middle of ``subscribe``, ``unsubscribe``,
    ``stats()`` and ``subscriber_count()``; each finalizer unsubscribes a
    handler and removes a middleware.
    """
    bus = EventBus(name="finalizers")

    def run() -> None:
        for i in range(3_000):
            Disposer(bus)
            _registry_churn(bus, i)

    workers.start(run, name="finalizers")
    workers.join(timeout=60)
    gc.set_threshold(700, 10, 10)
    collect()
    assert bus.subscriber_count() == 0
    assert bus.stats()["subscribers"] == {}
    assert bus.stats()["middleware"] == 0


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("gc_every_few_allocations")
def test_abandoned_streams_detach_without_deadlock(workers: Workers) -> None:
    """A stream dropped in a reference cycle detaches itself from the collector: no deadlock."""
    bus = EventBus(name="streams")

    async def main() -> None:
        for i in range(1_000):
            stream = bus.stream(ET.TASK_STARTED)
            stream.cycle = stream  # type: ignore[attr-defined]
            del stream
            _registry_churn(bus, i)

    workers.start(asyncio.run, main(), name="streams")
    workers.join(timeout=60)
    gc.set_threshold(700, 10, 10)
    collect()
    assert bus.stats()["streams"] == 0
    assert bus.stats()["subscribers"] == {}

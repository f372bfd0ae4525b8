"""Tests for weak handler references and registry cleanup."""

from __future__ import annotations

import functools
import weakref
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType, InvalidHandlerError
from atlas_events.exceptions import SubscriptionLeakWarning

from .conftest import collect

ET = EventType


class Component:
    """A typical component that subscribes its own bound method."""

    def __init__(self, bus: EventBus, sink: list[Any]) -> None:
        self.sink = sink
        self.token = bus.subscribe(ET.TASK_STARTED, self.on_task)

    def on_task(self, event: Event[Any]) -> None:
        self.sink.append(event.data)


class CallableComponent:
    """A callable object used as a handler."""

    def __init__(self, sink: list[Any]) -> None:
        self.sink = sink

    def __call__(self, event: Event[Any]) -> None:
        self.sink.append(event.data)


def test_bound_method_is_weak_by_default(bus: EventBus) -> None:
    """A component's bound-method handler dies with the component; registry shrinks."""
    sink: list[Any] = []
    comp = Component(bus, sink)
    bus.publish(ET.TASK_STARTED, 1)
    token = comp.token
    ref = weakref.ref(comp)
    del comp
    collect()
    assert ref() is None
    assert not token.active
    assert token() is False
    bus.publish(ET.TASK_STARTED, 2)
    assert sink == [1]
    assert bus.subscriber_count() == 0
    assert bus.stats()["subscribers"] == {}


def test_dead_handler_is_skipped_before_purge(bus: EventBus) -> None:
    """Between death and purge, dispatch skips the dead entry (and counts no delivery)."""
    sink: list[Any] = []
    comp = Component(bus, sink)
    del comp
    collect()
    bus.publish(ET.TASK_STARTED, 1)  # purges on the skip path
    assert sink == []
    assert bus.stats()["delivered"] == 0
    assert bus.get_signal(ET.TASK_STARTED).receivers == {}


def test_lambdas_and_closures_are_strong_by_default(bus: EventBus) -> None:
    """The blinker weak=True footgun is avoided: lambdas keep working after creation."""
    sink: list[Any] = []

    def make() -> None:
        local = "closure"
        bus.subscribe(ET.TASK_STARTED, lambda e: sink.append(local))

    make()
    collect()
    bus.publish(ET.TASK_STARTED)
    assert sink == ["closure"]


def test_weak_false_keeps_a_component_alive(bus: EventBus) -> None:
    """weak=False holds a bound method (and so its component) strongly."""
    sink: list[Any] = []
    comp = CallableComponent(sink)
    bus.subscribe(ET.TASK_STARTED, comp.__call__, weak=False)
    ref = weakref.ref(comp)
    del comp
    collect()
    assert ref() is not None
    bus.publish(ET.TASK_STARTED, 1)
    assert sink == [1]


def test_weak_true_on_a_callable_object(bus: EventBus) -> None:
    """weak=True holds a callable object weakly; it stops when the object dies."""
    sink: list[Any] = []
    obj = CallableComponent(sink)
    tok = bus.subscribe(ET.TASK_STARTED, obj, weak=True)
    bus.publish(ET.TASK_STARTED, 1)
    del obj
    collect()
    bus.publish(ET.TASK_STARTED, 2)
    assert sink == [1]
    assert not tok.active


def test_weak_true_on_unweakrefable_handler(bus: EventBus) -> None:
    """weak=True on something that cannot be weakly referenced is a clear error."""

    class Slotted:
        __slots__ = ()

        def __call__(self, event: Event[Any]) -> None:
            pass

    with pytest.raises(InvalidHandlerError, match="cannot be weakly referenced"):
        bus.subscribe(ET.TASK_STARTED, Slotted(), weak=True)
    assert bus.subscriber_count() == 0


def test_weak_handler_with_filter_and_once(bus: EventBus) -> None:
    """Weak handlers keep filter/once semantics and still die with their owner."""
    sink: list[Any] = []
    comp = CallableComponent(sink)
    bus.subscribe(ET.TASK_STARTED, comp.__call__, filter=lambda e: e.data > 1, once=True)
    for i in range(4):
        bus.publish(ET.TASK_STARTED, i)
    assert sink == [2]
    comp2 = CallableComponent(sink)
    tok = bus.subscribe(ET.TASK_STARTED, comp2.__call__, filter=lambda e: True)
    del comp2
    collect()
    bus.publish(ET.TASK_STARTED, 9)
    assert sink == [2]
    assert not tok.active


def test_many_short_lived_components_leave_the_registry_empty(bus: EventBus) -> None:
    """1,000 components that come and go leave no receivers behind."""
    sink: list[Any] = []
    for i in range(1000):
        Component(bus, sink)
        if i % 100 == 0:
            bus.publish(ET.TASK_STARTED, i)
    collect()
    assert bus.subscriber_count() == 0
    assert bus.get_signal(ET.TASK_STARTED).receivers == {}


def test_handler_error_names_a_weak_method(bus: EventBus) -> None:
    """A failing weak bound method is reported by its qualified name."""

    class Failing:
        def on(self, e: Event[Any]) -> None:
            raise RuntimeError("x")

    f = Failing()
    failures: list[Event[Any]] = []
    bus.subscribe(ET.HANDLER_ERROR, failures.append)
    bus.subscribe(ET.TASK_STARTED, f.on)
    bus.publish(ET.TASK_STARTED)
    assert failures[0].data.handler.endswith("Failing.on")


class Picky:
    """A component with a handler and a filter method."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_event(self, e: Event[Any]) -> None:
        self.seen.append(e.data)

    def on_tagged(self, tag: str, e: Event[Any]) -> None:
        self.seen.append((tag, e.data))

    def wants(self, e: Event[Any]) -> bool:
        return bool(e.data != "skip")


def test_filter_method_of_the_same_component_is_held_weakly(bus: EventBus) -> None:
    """filter=comp.wants filters while comp lives and does not keep it alive."""
    comp = Picky()
    token = bus.subscribe(ET.TASK_STARTED, comp.on_event, filter=comp.wants)
    bus.publish(ET.TASK_STARTED, "skip")
    bus.publish(ET.TASK_STARTED, "keep")
    assert comp.seen == ["keep"]
    ref = weakref.ref(comp)
    del comp
    collect()
    assert ref() is None
    assert not token.active
    bus.publish(ET.TASK_STARTED, "after")
    assert bus.subscriber_count() == 0


def test_filter_method_of_a_weak_callable_object_is_held_weakly(bus: EventBus) -> None:
    """weak=True on a callable object: a filter method of that object is weak too."""
    sink: list[Any] = []

    class Handler(CallableComponent):
        def wants(self, e: Event[Any]) -> bool:
            return True

    h = Handler(sink)
    token = bus.subscribe(ET.TASK_STARTED, h, weak=True, filter=h.wants)
    bus.publish(ET.TASK_STARTED, 1)
    del h
    collect()
    assert not token.active
    assert sink == [1]


def test_partial_binding_a_method_is_weak_like_the_method(bus: EventBus) -> None:
    """partial(Comp.method, comp) and partial(comp.method, arg) die with comp."""
    comp = Picky()
    plain = bus.subscribe(ET.TASK_STARTED, functools.partial(Picky.on_event, comp))
    tagged = bus.subscribe(ET.TASK_STARTED, functools.partial(comp.on_tagged, "t"))
    bus.publish(ET.TASK_STARTED, 1)
    assert comp.seen == [1, ("t", 1)]
    ref = weakref.ref(comp)
    del comp
    collect()
    assert ref() is None
    assert not plain.active
    assert not tagged.active
    assert bus.subscriber_count() == 0


def test_partial_with_weak_false_and_partial_of_a_plain_function_stay_strong(
    bus: EventBus,
) -> None:
    """weak=False keeps the owner; a partial of a free function is not a method: strong."""
    comp = Picky()
    ref = weakref.ref(comp)
    bus.subscribe(ET.TASK_STARTED, functools.partial(Picky.on_event, comp), weak=False)
    del comp
    collect()
    assert ref() is not None

    def record(sink: list[Any], e: Event[Any]) -> None:
        sink.append(e.data)

    sink: list[Any] = []
    token = bus.subscribe(ET.TASK_COMPLETED, functools.partial(record, sink))
    collect()
    bus.publish(ET.TASK_COMPLETED, 5)
    assert sink == [5]
    assert token.active


def test_a_closure_filter_over_the_owner_warns_at_subscribe(bus: EventBus) -> None:
    """A companion that pins the weakly held owner and cannot be weak: a warning names it."""
    comp = Picky()
    with pytest.warns(SubscriptionLeakWarning, match="keeps its owner"):
        bus.subscribe(ET.TASK_STARTED, comp.on_event, filter=lambda e: comp.wants(e))

    def wants(c: Picky, e: Event[Any]) -> bool:
        return True

    with pytest.warns(SubscriptionLeakWarning):
        bus.subscribe(ET.TASK_STARTED, comp.on_event, filter=functools.partial(wants, comp))


def test_a_partial_filter_binding_a_method_of_the_owner_is_weak(bus: EventBus) -> None:
    """filter=partial(Comp.wants, comp) is the owner's method in all but name: weak."""
    comp = Picky()
    token = bus.subscribe(
        ET.TASK_STARTED, comp.on_event, filter=functools.partial(Picky.wants, comp)
    )
    bus.publish(ET.TASK_STARTED, "skip")
    bus.publish(ET.TASK_STARTED, "keep")
    assert comp.seen == ["keep"]
    del comp
    collect()
    assert not token.active


def test_a_warning_turned_error_leaves_nothing_registered(bus: EventBus) -> None:
    """Under filterwarnings=error the subscribe fails cleanly: no half-registered handler."""
    comp = Picky()
    with pytest.raises(SubscriptionLeakWarning):
        bus.subscribe(ET.TASK_STARTED, comp.on_event, filter=lambda e: comp.wants(e))
    assert bus.subscriber_count() == 0


def test_unrelated_filters_neither_warn_nor_weaken(bus: EventBus) -> None:
    """A filter of another object, or a free function, is held as given without warning."""
    comp = Picky()
    other = Picky()
    other_ref = weakref.ref(other)
    bus.subscribe(ET.TASK_STARTED, comp.on_event, filter=other.wants)
    bus.subscribe(ET.TASK_STARTED, comp.on_event, filter=lambda e: True)
    del other
    collect()
    assert other_ref() is not None  # the filter's own object is kept by the filter
    bus.publish(ET.TASK_STARTED, "skip")
    assert comp.seen == ["skip"]  # only the lambda-filtered subscription let it through


def test_filter_reaching_the_owner_through_a_helper_is_warned(bus: EventBus) -> None:
    """filter=owner.helper.wants, where helper keeps the owner: warned, like a closure."""

    class Helper:
        def __init__(self, owner: object) -> None:
            self.owner = owner

        def wants(self, e: Any) -> bool:
            return True

    class Comp:
        def __init__(self) -> None:
            self.helper = Helper(self)

        def on(self, e: Any) -> None:
            pass

    comp = Comp()
    with pytest.warns(SubscriptionLeakWarning, match="keeps its owner"):
        token = bus.subscribe(EventType.TASK_STARTED, comp.on, filter=comp.helper.wants)
    token()

"""Tests for weak handler references and registry cleanup."""

from __future__ import annotations

import weakref
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType, InvalidHandlerError

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

"""Tests for _bus_policies: typed keys and declared payloads."""

from __future__ import annotations

import attrs
import pytest

from atlas_events import Event, EventBus, EventType, PayloadTypeError, declare

ET = EventType


@attrs.frozen
class Done:
    """A payload class for typed-key tests."""

    task: str


DONE = declare(ET.TASK_COMPLETED, Done)


def test_typed_key_checks_payloads(bus: EventBus) -> None:
    """Publishing through a key checks the payload; a wrong one raises, nothing recorded."""
    got: list[Event[Done]] = []
    bus.subscribe(DONE, got.append)
    bus.publish(DONE, Done("a"))
    with pytest.raises(PayloadTypeError, match="carries Done payloads, got str") as info:
        bus.publish(DONE, "oops")  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert [e.data for e in got] == [Done("a")]
    assert len(bus.history()) == 1


def test_declared_type_checks_bare_enum_publishes(bus: EventBus) -> None:
    """After bus.declare(key), even the bare enum member is checked, on every scope."""
    bus.declare(DONE)
    child = bus.scope("child")
    with pytest.raises(PayloadTypeError):
        bus.publish(ET.TASK_COMPLETED, {"task": "a"})
    with pytest.raises(PayloadTypeError):
        child.publish(ET.TASK_COMPLETED, None)
    with pytest.raises(PayloadTypeError):
        bus.publish_event(Event.create(ET.TASK_COMPLETED, 1))
    bus.publish(ET.TASK_COMPLETED, Done("ok"))
    assert [e.data for e in bus.history()] == [Done("ok")]
    bus.declare(DONE)  # same declaration twice is fine
    with pytest.raises(ValueError, match="already declared"):
        bus.declare(declare(ET.TASK_COMPLETED, int))
    with pytest.raises(TypeError, match="EventKey"):
        bus.declare(ET.TASK_COMPLETED)  # type: ignore[arg-type]

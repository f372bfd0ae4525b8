"""Middleware: the chain on one bus (order, drops, errors) and the shipped middleware classes."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from atlas_events import ANY, Event, EventBus, EventType, MiddlewareError
from atlas_events.exceptions import (
    InvalidEventTypeError,
    InvalidMiddlewareResultError,
    InvalidOptionError,
)
from atlas_events.middleware import DropTypes, Redact, SetMetadata

from .conftest import Color

ET = EventType


@pytest.mark.parametrize(
    "bad",
    [[ET.TASK_FAILED], {ET.TASK_FAILED}, (ET.TASK_FAILED,), None, 5, "task.failed", ANY],
)
def test_drop_types_refuses_what_is_not_an_event_type(bad: object) -> None:
    """``DropTypes([T])`` (a list, not ``*types``), a str or ``ANY`` raise: no silent no-op.

    Before, ``DropTypes({ET.TASK_FAILED})`` was accepted and silently let
    every ``TASK_FAILED`` through.
    """
    with pytest.raises(InvalidEventTypeError) as info:
        DropTypes(bad)  # type: ignore[arg-type]
    if isinstance(bad, list | set | tuple):
        assert "DropTypes(*types)" in str(info.value)


def test_drop_types_with_members_drops_them() -> None:
    """Members given as separate arguments are dropped; others pass."""
    bus = EventBus(name="drops")
    bus.add_middleware(DropTypes(ET.TASK_FAILED, ET.TASK_STARTED))
    bus.publish(ET.TASK_FAILED)
    bus.publish(ET.TASK_COMPLETED)
    assert [e.type for e in bus.history()] == [ET.TASK_COMPLETED]
    bus.close()


@pytest.mark.parametrize("bad", [None, 5, "x", [("a", 1)], {1: 2}])
def test_set_metadata_values_must_be_a_str_keyed_mapping(bad: Any) -> None:
    """A non-mapping or a non-str key raises ``InvalidOptionError`` naming ``values``.

    Not an ``AttributeError`` from inside ``__init__``, nor a ``repr`` that
    fails later on mixed key types.
    """
    with pytest.raises(InvalidOptionError, match="values"):
        SetMetadata(bad)


@pytest.mark.parametrize("bad", [None, 1, "yes"])
def test_set_metadata_overwrite_must_be_a_bool(bad: Any) -> None:
    """``overwrite`` is a flag: anything but a bool is refused, naming it."""
    with pytest.raises(InvalidOptionError, match="overwrite"):
        SetMetadata({"a": 1}, overwrite=bad)


# ---------------------------------------------- moved from test_bus.py (unchanged)


def test_middleware_transforms_in_order_and_token_removes(bus: EventBus) -> None:
    """Middlewares run in the order added; their token removes them."""
    order: list[str] = []

    def first(e: Event[Any]) -> Event[Any]:
        order.append("first")
        return attrs.evolve(e, data=e.data + 1)

    def second(e: Event[Any]) -> Event[Any]:
        order.append("second")
        return attrs.evolve(e, data=e.data * 10)

    got: list[int] = []
    bus.subscribe(ET.TASK_STARTED, lambda e: got.append(e.data))
    t1 = bus.add_middleware(first)
    bus.add_middleware(second)
    bus.publish(ET.TASK_STARTED, 1)
    assert got == [20]
    assert order == ["first", "second"]
    assert t1() is True
    assert t1() is False
    bus.publish(ET.TASK_STARTED, 1)
    assert got == [20, 10]
    assert bus.stats()["middleware"] == 1


def test_middleware_drop_is_counted_not_recorded(bus: EventBus) -> None:
    """A middleware returning None drops the event: not recorded, not delivered."""
    got: list[Any] = []
    bus.subscribe(ANY, got.append)
    bus.add_middleware(DropTypes(ET.STREAM_STARTED))
    bus.publish(ET.STREAM_STARTED)
    bus.publish(ET.STREAM_FINISHED)
    assert [e.type for e in got] == [ET.STREAM_FINISHED]
    assert [e.type for e in bus.history()] == [ET.STREAM_FINISHED]
    assert bus.stats()["dropped_by_middleware"] == 1
    assert bus.history()[0].seq == 1  # dropped events consume no seq


def test_middleware_can_change_the_type(bus: EventBus) -> None:
    """Routing follows the type of the event a middleware returns."""
    got: list[Any] = []
    bus.subscribe(Color.GREEN, got.append)
    bus.add_middleware(lambda e: attrs.evolve(e, type=Color.GREEN) if e.type is Color.RED else e)
    bus.publish(Color.RED, "x")
    assert [e.type for e in got] == [Color.GREEN]


def test_middleware_that_raises(bus: EventBus) -> None:
    """publish raises MiddlewareError naming the middleware; nothing recorded; bus usable."""
    got: list[Any] = []
    bus.subscribe(ANY, got.append)

    def broken(e: Event[Any]) -> Event[Any]:
        raise KeyError("nope")

    tok = bus.add_middleware(broken)
    with pytest.raises(MiddlewareError, match="broken") as info:
        bus.publish(ET.TASK_STARTED)
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.middleware is broken
    assert got == []
    assert bus.history() == []
    tok()
    bus.publish(ET.TASK_STARTED)
    assert len(got) == 1


def test_middleware_returning_non_event(bus: EventBus) -> None:
    """A middleware returning a non-Event raises a clear error; nothing recorded."""
    bus.add_middleware(lambda e: "oops")  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidMiddlewareResultError, match="str") as info:
        bus.publish(ET.TASK_STARTED)
    assert isinstance(info.value, TypeError)
    assert bus.history() == []


def test_builtin_middlewares(bus: EventBus) -> None:
    """Redact masks secret keys (by word), SetMetadata stamps fixed and computed values."""
    bus.add_middleware(Redact())
    bus.add_middleware(SetMetadata({"host": "h1", "len": lambda e: len(e.data)}))
    bus.publish(
        ET.PROVIDER_CONNECTED,
        {"api_key": "k", "nested": [{"X-Auth-Token": "t"}], "tokens": 5},
        metadata={"Authorization": "Bearer x"},
    )
    ev = bus.history()[0]
    assert ev.data == {"api_key": "***", "nested": [{"X-Auth-Token": "***"}], "tokens": 5}
    assert dict(ev.metadata) == {"Authorization": "***", "host": "h1", "len": 3}


def test_redact_passes_clean_events_through_unchanged() -> None:
    """Redact returns the very same event when there is nothing to mask."""
    ev = Event.create(ET.TASK_STARTED, {"a": 1})
    assert Redact()(ev) is ev
    with pytest.raises(ValueError, match="at least one key"):
        Redact(keys=())

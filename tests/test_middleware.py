"""The shipped middleware classes: their options are checked when they are built."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_events import ANY, EventBus, EventType
from atlas_events.exceptions import InvalidEventTypeError, InvalidOptionError
from atlas_events.middleware import DropTypes, SetMetadata

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

"""Tests for _bus_subscribe: subscribe() refuses bad event types and handlers up front."""

from __future__ import annotations

from typing import Any, cast

import pytest

from atlas_events import EventBus, EventType, InvalidEventTypeError, InvalidHandlerError

ET = EventType


@pytest.mark.parametrize("bad", ["x", 1, None])
def test_subscribe_rejects_non_enum_types(bus: EventBus, bad: Any) -> None:
    """Subscribing with a non-enum type raises InvalidEventTypeError."""
    with pytest.raises(InvalidEventTypeError):
        bus.subscribe(bad, lambda e: None)
    assert bus.subscriber_count() == 0


def test_subscribe_rejects_bad_handlers(bus: EventBus) -> None:
    """Non-callables and callables of the wrong arity are refused, nothing registered."""
    with pytest.raises(InvalidHandlerError, match="expected a callable"):
        bus.subscribe(ET.TASK_STARTED, "nope")  # type: ignore[call-overload]
    with pytest.raises(InvalidHandlerError, match="one positional argument"):
        bus.subscribe(ET.TASK_STARTED, cast(Any, lambda: None))
    with pytest.raises(InvalidHandlerError, match="one positional argument"):
        bus.subscribe(ET.TASK_STARTED, cast(Any, lambda a, b: None))
    with pytest.raises(InvalidHandlerError, match="filter"):
        bus.subscribe(ET.TASK_STARTED, lambda e: None, filter=42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="once"):
        bus.subscribe(ET.TASK_STARTED, lambda e: None, once="yes")  # type: ignore[call-overload]
    with pytest.raises(InvalidHandlerError, match="middleware"):
        bus.add_middleware(None)  # type: ignore[arg-type]
    assert bus.subscriber_count() == 0
    assert bus.stats()["middleware"] == 0

"""The public exceptions: what each carries, whichever path raised it."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events.exceptions import InvalidMiddlewareResultError, MiddlewareError

ET = EventType


@pytest.mark.parametrize("via", ["publish", "publish_event", "scope"])
@pytest.mark.parametrize("result", [False, 0, "x", object()])
def test_invalid_middleware_result_carries_a_type_error_cause(via: str, result: Any) -> None:
    """A middleware returning a non-event raises with a TypeError ``__cause__`` on every path.

    ``MiddlewareError`` documents that the original exception is its
    ``__cause__``; for a bad result that is the TypeError naming the type.
    """
    bus = EventBus(name="root")
    bus.add_middleware(lambda e: result)
    child = bus.scope("child")
    calls = {
        "publish": lambda: bus.publish(ET.TASK_STARTED, 1),
        "publish_event": lambda: bus.publish_event(Event.create(ET.TASK_STARTED, {"x": 1})),
        "scope": lambda: child.publish(ET.TASK_STARTED, 1),
    }
    with pytest.raises(InvalidMiddlewareResultError) as info:
        calls[via]()
    assert isinstance(info.value, MiddlewareError)
    assert isinstance(info.value.__cause__, TypeError)
    assert type(result).__name__ in str(info.value.__cause__)
    assert info.value.result is result
    assert bus.history() == []
    bus.close()


def test_invalid_middleware_result_built_directly_has_its_cause() -> None:
    """Constructed outside the bus, the error still has its TypeError cause."""
    err = InvalidMiddlewareResultError("mw", "id-1", 3)
    assert isinstance(err.__cause__, TypeError)
    assert "int" in str(err)

"""Tests for the EventBus facade: publish, publish_event, close, bad input, the depth limit."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_events import (
    ANY,
    BusClosedError,
    Event,
    EventBus,
    EventType,
    InvalidEventTypeError,
    RecursionDepthError,
)

ET = EventType


def test_seed_usage_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    """The design card's example works as written, lambda and all."""
    bus = EventBus()
    unsubscribe = bus.subscribe(EventType.STREAM_STARTED, lambda e: print(e.data))
    bus.publish(EventType.STREAM_STARTED, {"stream_id": "s1"})
    assert capsys.readouterr().out == "{'stream_id': 's1'}\n"
    unsubscribe()
    bus.publish(EventType.STREAM_STARTED, {"stream_id": "s2"})
    assert capsys.readouterr().out == ""


def test_close_and_context_manager() -> None:
    """After close, publish and subscribe raise BusClosedError; tokens go inactive."""
    with EventBus(name="ctx") as b:
        tok = b.subscribe(ET.TASK_STARTED, lambda e: None)
    assert b.closed
    assert not tok.active
    with pytest.raises(BusClosedError, match="'ctx' is closed") as info:
        b.publish(ET.TASK_STARTED)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(BusClosedError):
        b.subscribe(ET.TASK_STARTED, lambda e: None)
    with pytest.raises(BusClosedError):
        b.publish_event(Event.create(ET.TASK_STARTED))
    b.close()  # idempotent


@pytest.mark.parametrize("bad", ["task.started", 3, None, object(), ANY])
def test_publish_rejects_non_enum_types(bus: EventBus, bad: Any) -> None:
    """Publishing a non-enum type (or ANY) raises InvalidEventTypeError; bus intact."""
    with pytest.raises(InvalidEventTypeError):
        bus.publish(bad)
    assert bus.stats()["published"] == 0
    bus.publish(ET.TASK_STARTED)
    assert bus.stats()["published"] == 1


def test_publish_rejects_bad_fields(bus: EventBus) -> None:
    """Bad metadata, source or correlation id raise TypeError; nothing recorded."""
    with pytest.raises(TypeError, match="metadata"):
        bus.publish(ET.TASK_STARTED, metadata=[1, 2])  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="source"):
        bus.publish(ET.TASK_STARTED, source=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="correlation_id"):
        bus.publish(ET.TASK_STARTED, correlation_id=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="Event"):
        bus.publish_event("not an event")  # type: ignore[arg-type]
    assert bus.history() == []


def test_runaway_recursion_hits_the_depth_limit() -> None:
    """A handler re-publishing forever stops at max_depth with a clear error."""
    b = EventBus(max_depth=10)
    depth: list[int] = []
    failures: list[Event[Any]] = []
    b.subscribe(ET.HANDLER_ERROR, failures.append)

    def again(e: Event[Any]) -> None:
        depth.append(1)
        b.publish(ET.TASK_STARTED)

    tok = b.subscribe(ET.TASK_STARTED, again)
    b.publish(ET.TASK_STARTED)
    assert len(depth) == 10
    (failure,) = failures
    assert isinstance(failure.data.exception, RecursionDepthError)
    assert failure.data.exception.limit == 10
    tok()
    b.publish(ET.TASK_STARTED)  # still usable
    assert b.stats()["published"] == 10 + 1 + 1

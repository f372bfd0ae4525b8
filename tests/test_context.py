"""Tests for _context: causation, correlate() blocks and the current correlation id."""

from __future__ import annotations

import asyncio
import threading

import pytest

from atlas_events import Event, EventBus, EventType, correlate, current_correlation_id

ET = EventType


def test_correlate_nests_and_restores() -> None:
    """An inner block overrides the outer id; leaving it restores the outer one."""
    assert current_correlation_id() is None
    with correlate("outer"):
        with correlate("inner") as cid:
            assert cid == "inner"
            assert current_correlation_id() == "inner"
        assert current_correlation_id() == "outer"
    assert current_correlation_id() is None


@pytest.mark.parametrize("bad", ["", None, 7])
def test_correlate_refuses_a_bad_id(bad: object) -> None:
    """The id must be a non-empty str."""
    with pytest.raises(ValueError, match="correlation_id"), correlate(bad):  # type: ignore[arg-type]
        pass


def test_tasks_inherit_the_block_and_threads_do_not(bus: EventBus) -> None:
    """asyncio tasks created inside the block carry its id; new threads do not."""
    seen: dict[str, str | None] = {}

    async def in_task() -> None:
        seen["task"] = Event.create(EventType.TASK_STARTED).correlation_id

    def in_thread() -> None:
        seen["thread"] = Event.create(EventType.TASK_STARTED).correlation_id

    with correlate("run-1"):
        asyncio.run(in_task())
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join(10)
    assert seen == {"task": "run-1", "thread": None}


def test_a_handler_sees_the_id_of_the_event_it_handles(bus: EventBus) -> None:
    """Inside dispatch the current correlation id is the handled event's."""
    seen: list[str | None] = []
    bus.subscribe(EventType.TASK_STARTED, lambda e: seen.append(current_correlation_id()))
    bus.publish(EventType.TASK_STARTED, correlation_id="r9")
    bus.publish(EventType.TASK_STARTED)
    assert seen == ["r9", None]


def test_causation_parent_id(bus: EventBus) -> None:
    """An event published while handling another records it as parent_id."""
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED))
    parent = bus.publish(ET.TASK_STARTED)
    child = bus.history(ET.TASK_COMPLETED)[0]
    assert child.parent_id == parent
    bus.publish(ET.TASK_COMPLETED)
    assert bus.history(ET.TASK_COMPLETED)[-1].parent_id is None


def test_correlation_ids(bus: EventBus) -> None:
    """correlation_id= and correlate() tag events; handlers' publishes inherit it."""
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED))
    bus.publish(ET.TASK_STARTED, correlation_id="run-1")
    with correlate("run-2") as cid:
        assert current_correlation_id() == cid == "run-2"
        bus.publish(ET.TASK_STARTED)
    assert current_correlation_id() is None
    bus.publish(ET.TASK_STARTED)
    assert [e.correlation_id for e in bus.history()] == [
        "run-1",
        "run-1",
        "run-2",
        "run-2",
        None,
        None,
    ]
    assert len(bus.history(correlation_id="run-2")) == 2
    with pytest.raises(ValueError, match="correlation_id"), correlate(""):
        pass

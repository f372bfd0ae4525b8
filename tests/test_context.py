"""Tests for _context: causation, correlate() blocks and the current correlation id."""

from __future__ import annotations

import asyncio
import gc
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


def test_collector_switches_the_bound_accessors_for_a_collection() -> None:
    """A bound namespace gets the direct accessors, the guarded ones during a collection."""
    from atlas_events import _context

    namespace: dict[str, object] = {}
    collector = _context.Collector()
    collector.bind(namespace)
    assert namespace["context_get"] == _context.get_context
    assert namespace["context_set"] == _context.set_context
    collector("start", {})
    try:
        assert namespace["context_get"] is _context.read_context
        assert namespace["context_set"] is _context.enter_context
        assert namespace["context_reset"] is _context.exit_context
        late: dict[str, object] = {}
        collector.bind(late)  # bound during a collection: guarded at once
        assert late["context_set"] is _context.enter_context
    finally:
        collector("stop", {})
    assert namespace["context_reset"] == _context.reset_context
    assert late["context_get"] == _context.get_context


def test_publish_modules_are_bound_and_follow_real_collections() -> None:
    """The publish loop's modules are registered; gc.collect() switches them and back."""
    import gc

    from atlas_events import _bus, _context, _dispatch

    seen: list[object] = []

    def spy(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(_dispatch.__dict__["context_set"])

    gc.callbacks.append(spy)  # runs after COLLECTOR (appended at import)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(spy)
    assert seen
    assert seen[0] is _context.enter_context
    assert _dispatch.__dict__["context_set"] == _context.set_context
    assert _bus.__dict__["context_get"] == _context.get_context
    assert _context.read_context() is None


def test_context_entered_before_a_collection_is_left_during_one() -> None:
    """A token from the direct set is undone by the guarded exit (the names switch mid-publish)."""
    from atlas_events import _context

    token = _context.set_context(("parent", 1, "run", None))
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no real collection ends the simulated one (collections never nest)
    _context.COLLECTOR("start", {})
    try:
        assert _context.read_context() == ("parent", 1, "run", None)
        _context.exit_context(token)  # what a publish left mid-way sees after the switch
        assert _context.read_context() is None
    finally:
        _context.COLLECTOR("stop", {})
        if gc_was_enabled:
            gc.enable()
    assert _context.get_context() is None

"""The publish loop: handler-failure reports, re-entry, nested-publish order, deep scope chains."""

from __future__ import annotations

import contextvars
import gc
import logging
import sys
import threading
from typing import Any

import pytest

from atlas_events import (
    ANY,
    Event,
    EventBus,
    EventType,
    HandlerError,
    HandlerFailure,
    MiddlewareError,
    RecursionDepthError,
)

ET = EventType
MODES = ["queued", "immediate"]


def _observe(bus: EventBus, into: list[tuple[str, int]]) -> None:
    bus.subscribe(ANY, lambda e: into.append((e.type.name, e.seq)))


def test_queued_mode_every_handler_sees_seq_order() -> None:
    """Default (queued): handlers before and after a republishing handler agree with history."""
    bus = EventBus()
    assert bus.nested == "queued"
    early: list[tuple[str, int]] = []
    late: list[tuple[str, int]] = []
    _observe(bus, early)
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED))
    bus.subscribe(ET.TASK_COMPLETED, lambda e: bus.publish(ET.TASK_FAILED))
    _observe(bus, late)
    bus.publish(ET.TASK_STARTED)
    hist = [(e.type.name, e.seq) for e in bus.history()]
    assert hist == [("TASK_STARTED", 1), ("TASK_COMPLETED", 2), ("TASK_FAILED", 3)]
    assert early == hist
    assert late == hist


def test_immediate_mode_is_depth_first() -> None:
    """nested='immediate': the nested event is delivered before the outer one's later handlers."""
    bus = EventBus(nested="immediate")
    late: list[str] = []
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED))
    bus.subscribe(ANY, lambda e: late.append(e.type.name))
    bus.publish(ET.TASK_STARTED)
    assert late == ["TASK_COMPLETED", "TASK_STARTED"]
    assert [e.type.name for e in bus.history()] == ["TASK_STARTED", "TASK_COMPLETED"]


@pytest.mark.parametrize("mode", MODES)
def test_history_and_streams_are_in_seq_order_in_both_modes(mode: str) -> None:
    """Whatever the mode, history is in seq order and each seq is recorded once."""
    bus = EventBus(nested=mode)  # type: ignore[arg-type]

    def fan(e: Event[Any]) -> None:
        if e.data < 3:
            bus.publish(ET.TASK_STARTED, e.data + 1)
            bus.publish(ET.TASK_STARTED, e.data + 1)

    bus.subscribe(ET.TASK_STARTED, fan)
    bus.publish(ET.TASK_STARTED, 0)
    seqs = [e.seq for e in bus.history()]
    assert seqs == list(range(1, 16))  # 1 + 2 + 4 + 8 events


def test_queued_nested_publish_returns_the_id_before_delivery() -> None:
    """In queued mode a nested publish returns its id; the event is recorded after the outer one."""
    bus = EventBus()
    ids: list[str] = []
    seen_in_history: list[int] = []

    def outer(e: Event[Any]) -> None:
        ids.append(bus.publish(ET.TASK_COMPLETED))
        seen_in_history.append(len(bus.history()))

    bus.subscribe(ET.TASK_STARTED, outer)
    first = bus.publish(ET.TASK_STARTED)
    assert seen_in_history == [1]  # only the outer event, while its handlers run
    (nested,) = bus.history(ET.TASK_COMPLETED)
    assert nested.id == ids[0]
    assert nested.parent_id == first  # causation kept


def test_queued_nested_publishes_reach_the_parent_after_the_outer_event() -> None:
    """A scope's nested event is forwarded after the outer one: the root records both in order."""
    root = EventBus()
    scope = root.scope("a").scope("b")
    scope.subscribe(ET.TASK_STARTED, lambda e: scope.publish(ET.TASK_COMPLETED))
    root_seen: list[str] = []
    root.subscribe(ANY, lambda e: root_seen.append(e.type.name))
    scope.publish(ET.TASK_STARTED)
    assert root_seen == ["TASK_STARTED", "TASK_COMPLETED"]
    assert [e.type.name for e in root.history()] == root_seen
    assert [e.type.name for e in scope.history()] == root_seen


def test_queued_runaway_recursion_still_stops_at_max_depth() -> None:
    """Queued delivery keeps the causation depth: a handler re-publishing forever stops."""
    bus = EventBus(max_depth=6)
    failures: list[Event[Any]] = []
    bus.subscribe(ET.HANDLER_ERROR, failures.append)
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_STARTED))
    bus.publish(ET.TASK_STARTED)
    assert bus.stats()["published"] == 6 + 1  # 6 levels, then the error report
    (failure,) = failures
    assert isinstance(failure.data.exception, RecursionDepthError)


def test_queued_handler_errors_surface_from_the_outermost_publish() -> None:
    """With raise_handler_errors, a queued event's handler error is raised by the outer publish."""
    bus = EventBus(raise_handler_errors=True)

    def boom(e: Event[Any]) -> None:
        raise ValueError("nested failed")

    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED))
    bus.subscribe(ET.TASK_COMPLETED, boom)
    with pytest.raises(ExceptionGroup) as info:
        bus.publish(ET.TASK_STARTED)
    (err,) = info.value.exceptions
    assert isinstance(err, HandlerError)
    assert isinstance(err.exception, ValueError)
    assert [e.type for e in bus.history()] == [ET.TASK_STARTED, ET.TASK_COMPLETED]


def test_handler_error_reports_follow_the_failing_event_in_queued_mode() -> None:
    """HANDLER_ERROR is queued like any nested event: ANY handlers see it after the failed event."""
    bus = EventBus()
    seen: list[str] = []

    def boom(e: Event[Any]) -> None:
        raise ValueError("x")

    bus.subscribe(ET.TASK_STARTED, boom)
    bus.subscribe(ANY, lambda e: seen.append(e.type.name))
    bus.publish(ET.TASK_STARTED)
    assert seen == ["TASK_STARTED", "HANDLER_ERROR"]
    (report,) = bus.history(ET.HANDLER_ERROR)
    assert report.data.exception.__traceback__ is None  # released after delivery


def test_nested_mode_is_inherited_by_scopes_and_validated() -> None:
    """Scopes take their parent's mode unless given one; a bad mode is refused."""
    root = EventBus(nested="immediate")
    assert root.scope("a").nested == "immediate"
    assert root.scope("b", nested="queued").nested == "queued"
    with pytest.raises(ValueError, match="nested"):
        EventBus(nested="later")  # type: ignore[arg-type]


def test_publish_options_may_be_passed_positionally() -> None:
    """publish(type, data, source, metadata, correlation_id, propagate) works positionally."""
    bus = EventBus()
    bus.publish(ET.TASK_STARTED, 1, "src", {"k": "v"}, "run-1", True)
    (ev,) = bus.history()
    assert (ev.source, dict(ev.metadata), ev.correlation_id) == ("src", {"k": "v"}, "run-1")


def test_a_scope_chain_deeper_than_the_recursion_limit_forwards_and_closes() -> None:
    """Forwarding and closing walk the scope chain without recursion (depth > recursion limit)."""
    depth = sys.getrecursionlimit() + 200
    root = EventBus(history_limit=10)
    node: EventBus = root
    for i in range(depth):
        node = node.scope(f"s{i}", history_limit=1)
    node.publish(ET.TASK_STARTED)
    (ev,) = root.history()
    assert len(ev.scope) == depth
    root.close()
    assert node.closed


def test_an_ancestors_middleware_error_leaves_the_event_recorded_nowhere() -> None:
    """Every level's middleware runs before any level records: an error records nothing."""
    from atlas_events import MiddlewareError

    root = EventBus()
    child = root.scope("a").scope("b")
    seen: list[Event[Any]] = []
    child.subscribe(ANY, seen.append)

    def broken(e: Event[Any]) -> Event[Any]:
        raise RuntimeError("policy down")

    root.add_middleware(broken)
    with pytest.raises(MiddlewareError):
        child.publish(ET.TASK_STARTED)
    assert child.history() == root.history() == seen == []
    assert child.last_seq == root.last_seq == 0


def test_ancestor_middleware_sees_unrecorded_events() -> None:
    """A parent's middleware sees seq == -1, like the publishing bus's own."""
    root = EventBus()
    child = root.scope("c")
    seqs: list[int] = []

    def note(e: Event[Any]) -> Event[Any]:
        seqs.append(e.seq)
        return e

    root.add_middleware(note)
    child.publish(ET.TASK_STARTED)
    assert seqs == [-1]


class _FailingSink:
    """A user sink whose ``push`` raises on every event."""

    kind = "failing"
    blocks = False

    def __init__(self) -> None:
        self.pushed = 0

    def push(self, event: Event[Any]) -> None:
        self.pushed += 1
        raise RuntimeError("sink push failed")

    def wait_for_room(self) -> None:
        return None

    def close(self) -> None:
        return None

    def stats(self) -> Any:
        return {"kind": self.kind}


@pytest.mark.parametrize("where", ["root", "child"])
def test_a_failing_sink_leaves_the_event_recorded_and_delivered_on_every_level(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink whose ``push`` raises is logged; publish still records and delivers everywhere.

    Before, the error escaped ``publish`` from inside the recording step:
    the event was recorded on the child but never delivered or forwarded
    (or recorded at the root without reaching the root's handlers).
    """
    root = EventBus(name="root")
    child = root.scope("child")
    root_seen: list[Any] = []
    child_seen: list[Any] = []
    root.subscribe(ANY, root_seen.append)
    child.subscribe(ANY, child_seen.append)
    failing = _FailingSink()
    (root if where == "root" else child).attach_sink(failing)
    other = _FailingSink()
    other.push = lambda event: None  # type: ignore[method-assign]
    (root if where == "root" else child).attach_sink(other)
    with caplog.at_level("ERROR", logger="atlas_events"):
        event_id = child.publish(ET.TASK_STARTED)
    assert [e.id for e in child.history()] == [event_id]
    assert [e.id for e in root.history()] == [event_id]
    assert [e.id for e in child_seen] == [e.id for e in root_seen] == [event_id]
    assert failing.pushed == 1
    assert any("failing sink" in r.getMessage() for r in caplog.records)
    root.close()


def test_queued_order_holds_above_a_publishing_scope_with_no_handlers() -> None:
    """The outermost publish owns the queue even when its own bus has no handler.

    Before: a leaf without handlers dispatched at its ancestors with no queue,
    so a second ancestor handler saw the nested event first.
    """
    root = EventBus()
    leaf = root.scope("a").scope("b")
    seen: list[tuple[str, str]] = []

    def first(e: Event[Any]) -> None:
        seen.append(("first", e.type.name))
        if e.type is EventType.TASK_STARTED:
            leaf.publish(EventType.TASK_COMPLETED)

    def second(e: Event[Any]) -> None:
        seen.append(("second", e.type.name))

    for handler in (first, second):
        root.subscribe(EventType.TASK_STARTED, handler)
        root.subscribe(EventType.TASK_COMPLETED, handler)
    leaf.publish(EventType.TASK_STARTED)
    assert seen == [
        ("first", "TASK_STARTED"),
        ("second", "TASK_STARTED"),
        ("first", "TASK_COMPLETED"),
        ("second", "TASK_COMPLETED"),
    ]
    assert [e.seq for e in root.history()] == [1, 2]


def test_code_run_by_the_collector_keeps_its_context_off_the_context_variable() -> None:
    """python/cpython#148891: inside a collection on this thread the context variable is untouched.

    A publish made there (a finalizer) keeps its dispatch context on the
    collector record instead, so its handlers still get causation, queued
    order and the depth limit; the context variable itself is never set.
    """
    from atlas_events import _context

    bus = EventBus(max_depth=5)
    seen: list[tuple[str, int]] = []
    parents: list[str | None] = []
    var_values: list[object] = []
    calls = 0

    def first(e: Event[Any]) -> None:
        var_values.append(_context.CONTEXT.get())
        seen.append(("first", e.seq))
        if e.type is ET.TASK_STARTED:
            bus.publish(ET.TASK_COMPLETED)

    def second(e: Event[Any]) -> None:
        seen.append(("second", e.seq))
        if e.type is ET.TASK_COMPLETED:
            parents.append(e.parent_id)

    def loop(e: Event[Any]) -> None:
        nonlocal calls
        calls += 1
        bus.publish(ET.TASK_FAILED)

    bus.subscribe(ANY, first)
    bus.subscribe(ANY, second)
    bus.subscribe(ET.TASK_FAILED, loop)
    # A collection never starts inside another (CPython's gc does not nest):
    # keep a real one from ending this simulated one half-way.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    _context.COLLECTOR("start", {})
    try:
        started = bus.publish(ET.TASK_STARTED)
        bus.publish(ET.TASK_FAILED)  # loop's RecursionDepthError is reported, not raised
    finally:
        _context.COLLECTOR("stop", {})
        if gc_was_enabled:
            gc.enable()
    assert var_values
    assert all(v is None for v in var_values)
    assert seen[:4] == [("first", 1), ("second", 1), ("first", 2), ("second", 2)]
    assert parents == [started]
    assert calls == 5  # max_depth held: RecursionDepthError reported, not RecursionError
    assert _context.read_context() is None


def test_handler_error_is_isolated_and_reported(bus: EventBus) -> None:
    """A raising handler does not stop the others; HANDLER_ERROR carries the details."""
    calls: list[str] = []
    failures: list[Event[Any]] = []

    def boom(e: Event[Any]) -> None:
        raise ValueError("boom")

    bus.subscribe(ET.HANDLER_ERROR, failures.append)
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("before"))
    bus.subscribe(ET.TASK_STARTED, boom)
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("after"))
    event_id = bus.publish(ET.TASK_STARTED)
    assert calls == ["before", "after"]
    (err,) = failures
    info = err.data
    assert isinstance(info, HandlerFailure)
    assert info.event_id == event_id
    assert info.event_type is ET.TASK_STARTED
    assert info.handler.endswith("test_handler_error_is_isolated_and_reported.<locals>.boom")
    assert isinstance(info.exception, ValueError)
    assert err.parent_id == event_id
    assert "boom" in str(info)
    assert bus.stats()["handler_errors"] == 1


def test_error_in_handler_error_handler_is_logged_not_recursed(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A HANDLER_ERROR handler that raises is logged once, never re-reported."""
    seen: list[Event[Any]] = []

    def bad_error_handler(e: Event[Any]) -> None:
        seen.append(e)
        raise RuntimeError("error handler broke")

    bus.subscribe(ET.HANDLER_ERROR, bad_error_handler)
    bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="atlas_events"):
        bus.publish(ET.TASK_STARTED)
    assert len(seen) == 1
    assert bus.stats()["handler_errors"] == 2
    assert any("error handler broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert len(bus.history(ET.HANDLER_ERROR)) == 1


def test_unobserved_handler_errors_are_logged(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """With no HANDLER_ERROR subscriber, a failure is logged at ERROR (never silent)."""
    bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="atlas_events"):
        bus.publish(ET.TASK_STARTED)
    assert any("no HANDLER_ERROR subscriber" in r.getMessage() for r in caplog.records)


def test_raise_handler_errors_mode(strict_bus: EventBus) -> None:
    """raise_handler_errors=True raises an ExceptionGroup after every handler ran."""
    calls: list[str] = []
    strict_bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    strict_bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("ran"))
    strict_bus.subscribe(ET.TASK_STARTED, lambda e: [][0])
    with pytest.raises(ExceptionGroup) as info:
        strict_bus.publish(ET.TASK_STARTED)
    assert calls == ["ran"]
    errors = info.value.exceptions
    assert [type(e.__cause__) for e in errors] == [ZeroDivisionError, IndexError]
    assert all(isinstance(e, HandlerError) for e in errors)
    assert len(strict_bus.history()) == 1  # recorded, no HANDLER_ERROR event


def test_handlers_may_reenter_the_bus(bus: EventBus) -> None:
    """Handlers publish, subscribe, unsubscribe and add middleware without deadlock."""
    log: list[str] = []
    late: list[Any] = []
    tokens: list[Any] = []

    def reenter(e: Event[Any]) -> None:
        log.append("reenter")
        tokens.append(bus.subscribe(ET.TASK_STARTED, late.append))
        bus.add_middleware(lambda ev: ev)
        bus.publish(ET.TASK_COMPLETED, "child")
        tokens[0]()  # unsubscribes itself (first token is its own)

    tokens.append(bus.subscribe(ET.TASK_STARTED, reenter))
    bus.subscribe(ET.TASK_COMPLETED, lambda e: log.append(f"completed:{e.data}"))
    bus.publish(ET.TASK_STARTED, 1)
    assert log == ["reenter", "completed:child"]
    assert late == []  # subscribed during dispatch: does not get the in-flight event
    bus.publish(ET.TASK_STARTED, 2)
    assert [e.data for e in late] == [2]
    assert log == ["reenter", "completed:child"]  # reenter unsubscribed itself


def test_middleware_returned_event_is_never_mutated(bus: EventBus) -> None:
    """An event a middleware returns (maybe one it keeps) is recorded as a copy."""
    cached = Event.create(ET.TASK_COMPLETED, "cached")
    bus.add_middleware(lambda e: cached)
    bus.publish(ET.TASK_STARTED)
    bus.publish(ET.TASK_STARTED)
    assert cached.seq == -1
    assert [e.seq for e in bus.history()] == [1, 2]
    assert all(e.id == cached.id for e in bus.history())


@pytest.mark.parametrize("nested", MODES)
def test_a_middleware_that_returns_another_event_gives_its_id_and_causation(nested: str) -> None:
    """``publish`` returns the recorded event's id; nested publishes name it as parent."""
    bus = EventBus(nested=nested)  # type: ignore[arg-type]
    other = Event.create(ET.TASK_COMPLETED, "replacement")
    bus.add_middleware(lambda e: other if e.type is ET.TASK_STARTED else e)
    parents: list[str | None] = []

    def on_completed(e: Event[Any]) -> None:
        if e.data == "replacement":
            bus.publish(ET.TASK_FAILED)

    bus.subscribe(ET.TASK_COMPLETED, on_completed)
    bus.subscribe(ET.TASK_FAILED, lambda e: parents.append(e.parent_id))
    assert bus.publish(ET.TASK_STARTED) == other.id
    assert parents == [other.id]
    assert bus.history()[0].id == other.id


def test_a_copied_context_publishing_after_its_dispatch_queues_its_own_nested_publishes() -> None:
    """A task or a later ``ctx.run`` is the outermost publish of its own delivery."""
    bus = EventBus()
    saved: list[contextvars.Context] = []
    bus.subscribe(ET.AGENT_STARTED, lambda e: saved.append(contextvars.copy_context()))
    bus.publish(ET.AGENT_STARTED)
    seen: list[tuple[str, int]] = []

    def first(e: Event[Any]) -> None:
        if e.type is ET.TASK_STARTED:
            bus.publish(ET.TASK_COMPLETED)

    bus.subscribe(ANY, first)
    _observe(bus, seen)
    saved[0].run(bus.publish, ET.TASK_STARTED)
    assert seen == [("TASK_STARTED", 2), ("TASK_COMPLETED", 3)]
    assert bus.history()[-1].parent_id == bus.history()[-2].id


@pytest.mark.parametrize("nested", MODES)
def test_a_failing_ancestor_middleware_raises_to_the_nested_publisher(nested: str) -> None:
    """Queued or not, the nested ``publish`` raises; its siblings are still delivered."""
    root = EventBus(nested=nested)  # type: ignore[arg-type]
    leaf = root.scope("leaf")

    def refuse(e: Event[Any]) -> Event[Any]:
        if e.data == "bad":
            raise ValueError("refused")
        return e

    root.add_middleware(refuse)
    results: dict[str, str] = {}

    def handler(e: Event[Any]) -> None:
        if e.data != "outer":
            return
        for data in ("good1", "bad", "good2"):
            try:
                results[data] = leaf.publish(ET.TASK_COMPLETED, data)
            except MiddlewareError:
                results[data] = "raised"

    leaf.subscribe(ET.TASK_STARTED, handler)
    leaf.publish(ET.TASK_STARTED, "outer")
    assert results["bad"] == "raised"
    assert {e.data for e in root.history()} == {"outer", "good1", "good2"}
    assert [e.data for e in leaf.history()] == ["outer", "good1", "good2"]


def test_enqueue_takes_only_this_threads_live_queue() -> None:
    """A live queue of this thread takes the call; a closed or foreign one does not."""
    from atlas_events._dispatch import enqueue

    calls: list[int] = []
    live: list[Any] = [threading.get_ident()]
    assert enqueue(live, lambda: calls.append(1))
    assert len(live) == 2
    closed: list[Any] = [0]
    assert not enqueue(closed, lambda: calls.append(2))
    assert closed == [0]
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(enqueue(live, lambda: calls.append(3))))
    worker.start()
    worker.join(10)
    assert seen == [False]
    assert len(live) == 2
    assert calls == []  # queued, not run

"""Tests for ScopedEventBus and the scope tree: forwarding, paths, per-level state, closing."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from atlas_events import (
    ANY,
    BusClosedError,
    Event,
    EventBus,
    EventType,
    ScopedEventBus,
    ScopeError,
)
from atlas_events.middleware import DropTypes

from .conftest import Alpha, Beta

ET = EventType


def test_events_forward_up_the_chain_as_the_same_event(bus: EventBus) -> None:
    """A scope's event reaches every ancestor with the same id and the full scope path."""
    agents = bus.scope("agents")
    planner = agents.scope("planner")
    assert isinstance(planner, ScopedEventBus)
    seen: dict[str, Event[Any]] = {}
    bus.subscribe(ANY, lambda e: seen.setdefault("root", e))
    agents.subscribe(ANY, lambda e: seen.setdefault("agents", e))
    planner.subscribe(ANY, lambda e: seen.setdefault("planner", e))
    event_id = planner.publish(ET.AGENT_STARTED, "p")
    assert {e.id for e in seen.values()} == {event_id}
    assert {e.scope for e in seen.values()} == {("agents", "planner")}
    assert planner.scope_path == ("agents", "planner")
    assert planner.parent is agents
    assert agents.parent is bus
    assert bus.parent is None


def test_delivery_order_is_local_first(bus: EventBus) -> None:
    """The scope's own subscribers run before its parent's."""
    order: list[str] = []
    child = bus.scope("c")
    bus.subscribe(ANY, lambda e: order.append("root"))
    child.subscribe(ANY, lambda e: order.append("child"))
    child.publish(ET.TASK_STARTED)
    assert order == ["child", "root"]


def test_each_level_has_its_own_seq_history_and_middleware(bus: EventBus) -> None:
    """Every level records its own history with its own seq and runs its own middleware."""
    child = bus.scope("c")
    bus.publish(ET.SYSTEM_INIT)
    bus.add_middleware(lambda e: attrs.evolve(e, metadata={**e.metadata, "root": True}))
    child.add_middleware(lambda e: attrs.evolve(e, metadata={**e.metadata, "child": True}))
    child.publish(ET.TASK_STARTED)
    (c_ev,) = child.history()
    r_ev = bus.history()[-1]
    assert c_ev.id == r_ev.id
    assert c_ev.seq == 1
    assert r_ev.seq == 2
    assert dict(c_ev.metadata) == {"child": True}
    assert dict(r_ev.metadata) == {"child": True, "root": True}


def test_parent_middleware_can_drop_forwarded_events(bus: EventBus) -> None:
    """A parent's middleware drop stops the event at that level only."""
    child = bus.scope("c")
    bus.add_middleware(DropTypes(ET.STREAM_STARTED))
    child.publish(ET.STREAM_STARTED)
    assert len(child.history()) == 1
    assert bus.history() == []
    assert bus.stats()["dropped_by_middleware"] == 1


def test_propagate_false_keeps_the_event_local(bus: EventBus) -> None:
    """publish(..., propagate=False) does not leave the scope."""
    child = bus.scope("c")
    child.publish(ET.TASK_STARTED, propagate=False)
    assert len(child.history()) == 1
    assert bus.history() == []


def test_parent_can_filter_by_scope(bus: EventBus) -> None:
    """A parent's subscriber tells scopes apart; history filters by scope prefix."""
    a = bus.scope("agents")
    a.scope("planner").publish(ET.TASK_STARTED, "p")
    a.scope("coder").publish(ET.TASK_STARTED, "c")
    bus.scope("providers").publish(ET.TASK_STARTED, "x")
    assert [e.data for e in bus.history(scope=("agents",))] == ["p", "c"]
    assert [e.data for e in bus.history(scope=("agents", "coder"))] == ["c"]


def test_deep_nesting(bus: EventBus) -> None:
    """Scopes nest to any depth (here 50) and still forward to the root."""
    node: EventBus = bus
    for i in range(50):
        node = node.scope(f"s{i}")
    node.publish(ET.TASK_STARTED)
    (ev,) = bus.history()
    assert len(ev.scope) == 50
    assert ev.scope[-1] == "s49"


def test_closing_a_scope_stops_forwarding_and_disposes_subscriptions(bus: EventBus) -> None:
    """A closed scope refuses publishes; its tokens go inactive; the parent stays open."""
    child = bus.scope("c")
    grandchild = child.scope("g")
    tok = child.subscribe(ET.TASK_STARTED, lambda e: None)
    assert bus.stats()["children"] == 1
    child.close()
    assert child.closed
    assert grandchild.closed
    assert not tok.active
    with pytest.raises(BusClosedError):
        child.publish(ET.TASK_STARTED)
    with pytest.raises(BusClosedError):
        grandchild.publish(ET.TASK_STARTED)
    bus.publish(ET.TASK_STARTED)
    assert len(bus.history()) == 1
    assert bus.stats()["children"] == 0


def test_closing_the_parent_closes_its_scopes() -> None:
    """Closing a root closes every scope below it."""
    root = EventBus()
    leaf = root.scope("a").scope("b")
    root.close()
    assert leaf.closed


def test_handler_errors_in_a_scope_reach_the_parent(bus: EventBus) -> None:
    """HANDLER_ERROR from a scope's handler is forwarded like any event."""
    child = bus.scope("c")
    errors: list[Event[Any]] = []
    bus.subscribe(ET.HANDLER_ERROR, errors.append)
    child.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    child.publish(ET.TASK_STARTED)
    assert len(errors) == 1
    assert errors[0].scope == ("c",)


def test_bad_scope_names_and_cycles(bus: EventBus) -> None:
    """Empty or slashed names are refused; a bus cannot become its own ancestor."""
    for bad in ("", "a/b", 3):
        with pytest.raises(ScopeError):
            bus.scope(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="EventBus"):
        ScopedEventBus("root", "x")  # type: ignore[arg-type]
    child = bus.scope("c")
    with pytest.raises(ScopeError, match="ancestor"):
        child._adopt(bus)
    assert bus.stats()["children"] == 1
    bus.close()
    with pytest.raises(BusClosedError):
        bus.scope("late")


def test_scope_inherits_options(bus: EventBus) -> None:
    """A scope inherits max_depth and error mode, with a path-like name."""
    strict = EventBus(raise_handler_errors=True, max_depth=5)
    child = strict.scope("x").scope("y")
    assert child.raise_handler_errors
    assert child.max_depth == 5
    assert child.name == "x/y"
    assert bus.scope("h", history_limit=2).history_limit == 2


def test_publish_event_on_a_scope_sets_the_scope(bus: EventBus) -> None:
    """A prebuilt event published on a scope takes that scope's path if it had none."""
    child = bus.scope("c")
    ev = Event.create(ET.TASK_STARTED, 1)
    child.publish_event(ev)
    assert bus.history()[0].scope == ("c",)
    assert bus.history()[0].id == ev.id
    assert ev.seq == -1  # the caller's event is never changed


def test_close_closes_every_scope_even_when_a_sink_fails() -> None:
    """A sink that raises on close does not leave other scopes open; its error is raised after."""
    from atlas_events import SinkStats

    class Failing:
        kind = "failing"
        blocks = False

        def push(self, event: Any) -> None:
            return None

        def wait_for_room(self) -> None:
            return None

        def close(self) -> None:
            raise OSError("disk gone")

        def stats(self) -> SinkStats:
            return {"kind": self.kind}

    root = EventBus()
    a = root.scope("a")
    b = a.scope("b")
    c = root.scope("c")
    a.attach_sink(Failing())
    with pytest.raises(ExceptionGroup) as info:
        root.close()
    assert isinstance(info.value.exceptions[0], OSError)
    assert all(x.closed for x in (root, a, b, c))
    root.close()  # idempotent, raises nothing the second time


def test_terminal_types_go_by_identity() -> None:
    """A member equal in value to a terminal type is not terminal itself."""
    b = EventBus(terminal_types=(Alpha.X,))
    assert id(Alpha.X) in b.terminal_ids
    assert id(Beta.Y) not in b.terminal_ids

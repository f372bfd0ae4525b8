"""Tests for Event, EventType, ids and typed event keys."""

from __future__ import annotations

import collections.abc
import enum
import pickle
from types import MappingProxyType
from typing import Any, cast

import attrs
import pytest

from atlas_events import ANY, Event, EventBus, EventKey, EventType, correlate, declare
from atlas_events.exceptions import InvalidEventTypeError

from .conftest import Color

REQUIRED_TYPES = {
    "SYSTEM_INIT",
    "SYSTEM_SHUTDOWN",
    "PROVIDER_CREATED",
    "PROVIDER_CONNECTED",
    "PROVIDER_DISCONNECTED",
    "STREAM_STARTED",
    "STREAM_FINISHED",
    "AGENT_STARTED",
    "AGENT_STOPPED",
    "TASK_STARTED",
    "TASK_COMPLETED",
    "WORKFLOW_NODE_ENTERED",
    "WORKFLOW_NODE_EXITED",
    "HANDLER_ERROR",
}


def test_event_type_has_the_core_lifecycle_members() -> None:
    """EventType defines at least the lifecycle types the design card names."""
    assert {m.name for m in EventType} >= REQUIRED_TYPES


def test_published_event_has_every_field(bus: EventBus) -> None:
    """An event published on a root bus carries all documented fields."""
    bus.publish(EventType.TASK_STARTED, {"task": "t"}, source="agent", metadata={"k": 1})
    (ev,) = bus.history()
    assert isinstance(ev, Event)
    assert ev.type is EventType.TASK_STARTED
    assert ev.data == {"task": "t"}
    assert ev.source == "agent"
    assert dict(ev.metadata) == {"k": 1}
    assert ev.scope == ()
    assert ev.parent_id is None
    assert ev.seq == 1
    assert ev.correlation_id is None
    assert ev.origin is None
    assert not ev.is_remote
    assert isinstance(ev.timestamp, float)
    assert ev.type_name == "EventType.TASK_STARTED"


def test_events_are_immutable(bus: EventBus) -> None:
    """Assigning to any field, or mutating metadata, raises."""
    bus.publish(EventType.TASK_STARTED, metadata={"a": 1})
    ev = bus.history()[0]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ev.data = 2  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ev.seq = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        ev.metadata["a"] = 2  # type: ignore[index]


def test_metadata_is_copied_so_caller_mutation_does_not_leak(bus: EventBus) -> None:
    """The bus snapshots metadata: changing the caller's dict later changes nothing."""
    meta = {"a": 1}
    bus.publish(EventType.TASK_STARTED, metadata=meta)
    meta["a"] = 2
    assert bus.history()[0].metadata["a"] == 1


def test_evolve_validates_and_keeps_frozen() -> None:
    """attrs.evolve makes a validated, frozen copy; a bad type is refused."""
    ev = Event.create(EventType.TASK_STARTED, 1)
    ev2 = attrs.evolve(ev, data=2)
    assert ev2.data == 2
    assert ev2.id == ev.id
    assert ev.data == 1
    with pytest.raises(InvalidEventTypeError):
        attrs.evolve(ev, type=cast(Any, "task.started"))
    with pytest.raises(InvalidEventTypeError):
        Event.create(ANY)


def test_event_create_copies_metadata_to_read_only() -> None:
    """Event.create freezes metadata into a read-only mapping."""
    ev = Event.create(Color.RED, metadata={"x": 1})
    assert isinstance(ev.metadata, MappingProxyType)
    assert ev.seq == -1


def test_user_enum_members_are_event_types(bus: EventBus) -> None:
    """A member of any Enum can be published and subscribed to."""
    got: list[object] = []
    bus.subscribe(Color.GREEN, lambda e: got.append(e.data))
    bus.publish(Color.GREEN, "g")
    bus.publish(Color.RED, "r")
    assert got == ["g"]


def test_event_type_is_not_a_plain_string(bus: EventBus) -> None:
    """Even though EventType is a StrEnum, its string value is not an event type."""
    with pytest.raises(InvalidEventTypeError, match="Enum member"):
        bus.publish("task.started")  # type: ignore[call-overload]


def test_declare_builds_a_typed_key() -> None:
    """declare() binds a type to a payload class and validates both."""

    @attrs.frozen
    class Payload:
        n: int

    key = declare(EventType.TASK_COMPLETED, Payload)
    assert isinstance(key, EventKey)
    assert key.type is EventType.TASK_COMPLETED
    assert key.payload is Payload
    assert "Payload" in repr(key)
    with pytest.raises(InvalidEventTypeError):
        declare("x", Payload)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="class"):
        declare(EventType.TASK_COMPLETED, 3)  # type: ignore[arg-type]


def test_events_pickle_round_trip() -> None:
    """Events can be pickled (e.g. for multiprocessing); the bridge uses JSON instead."""
    ev = Event.create(EventType.AGENT_STARTED, {"a": [1, 2]}, metadata={"m": 1})
    ev2 = pickle.loads(pickle.dumps(ev))
    assert ev2 == ev


class _Plain(enum.Enum):
    A = "a"


def test_event_equality_is_by_id() -> None:
    """An event is its id: a changed copy is equal, a new event with equal fields is not."""
    ev = Event.create(_Plain.A, 1)
    assert attrs.evolve(ev) == ev
    assert attrs.evolve(ev, data=2) == ev
    assert Event.create(_Plain.A, 1) != ev
    assert ev != "not an event"
    assert (ev == object()) is False


def test_every_event_is_hashable_consistently_with_equality(bus: EventBus) -> None:
    """Events with dict payloads and metadata hash (by id) and work in sets and as dict keys."""
    bus.publish(EventType.TASK_STARTED)
    bus.publish(EventType.TASK_STARTED, {"task": "t1"})
    bus.publish(EventType.TASK_STARTED, [1, 2], metadata={"k": {"nested": []}})
    events = bus.history()
    assert len({hash(e) for e in events}) == 3
    assert all(hash(e) == hash(e.id) for e in events)
    seen = {e: e.seq for e in events}
    assert len(seen) == 3
    assert isinstance(events[0], collections.abc.Hashable)
    copy = attrs.evolve(events[1], data={"task": "changed"})
    assert copy in seen
    assert hash(copy) == hash(events[1])


def test_one_event_seen_at_two_scope_levels_is_one_set_member(bus: EventBus) -> None:
    """The copies recorded by a child and its parent share the id: equal, one set entry."""
    child = bus.scope("agents").scope("planner")
    bus.publish(EventType.SYSTEM_INIT)
    child.publish(EventType.TASK_STARTED, {"x": 1})
    (low,) = child.history()
    high = bus.history()[-1]
    assert (low.seq, high.seq) == (1, 2)
    assert low.scope == high.scope == ("agents", "planner")
    assert low == high
    assert low is not high
    assert len({low, high}) == 1
    assert {low.id: low}.keys() == {high.id: high}.keys()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"source": 3}, TypeError),
        ({"metadata": [("k", "v")]}, TypeError),
        ({"correlation_id": 7}, TypeError),
        ({"correlation_id": ""}, ValueError),
    ],
)
def test_event_create_validates_its_inputs(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Event.create refuses a bad source, metadata or correlation id with a named error."""
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        Event.create(EventType.TASK_STARTED, None, **kwargs)


def test_event_create_refuses_non_enum_and_any_types() -> None:
    """A plain string or ANY is not an event type for Event.create."""
    with pytest.raises(InvalidEventTypeError):
        Event.create("task.started")  # type: ignore[call-overload]
    with pytest.raises(InvalidEventTypeError):
        Event.create(ANY)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("timestamp", float("nan"), ValueError),
        ("timestamp", float("inf"), ValueError),
        ("timestamp", "now", ValueError),
        ("source", 1, TypeError),
        ("metadata", 5, TypeError),
        ("scope", "agents", TypeError),
        ("scope", ("a", 1), TypeError),
        ("seq", 1.5, ValueError),
        ("seq", -2, ValueError),
        ("id", "", TypeError),
        ("correlation_id", 3, TypeError),
        ("parent_id", 3, TypeError),
    ],
)
def test_event_constructor_validates_fields(field: str, value: Any, error: type[Exception]) -> None:
    """Building an Event directly (or with attrs.evolve) checks every field and names it."""
    ev = Event.create(EventType.TASK_STARTED, 1)
    with pytest.raises(error, match=field):
        attrs.evolve(ev, **{field: value})


def test_event_create_joins_the_correlate_block() -> None:
    """Inside correlate(), Event.create carries the run's id unless given one."""
    with correlate("run-7"):
        tagged = Event.create(EventType.TASK_STARTED)
        explicit = Event.create(EventType.TASK_STARTED, correlation_id="other")
    outside = Event.create(EventType.TASK_STARTED)
    assert tagged.correlation_id == "run-7"
    assert explicit.correlation_id == "other"
    assert outside.correlation_id is None


def test_publish_event_in_a_correlate_block_is_tagged_and_in_the_run(bus: EventBus) -> None:
    """Everything published inside the block joins the run, prebuilt events included."""
    built_before = Event.create(EventType.TASK_FAILED, "early")
    with correlate("run-7"):
        bus.publish(EventType.TASK_STARTED, 1)
        bus.publish_event(Event.create(EventType.TASK_COMPLETED, 2))
        bus.publish_event(built_before)
    bus.publish_event(Event.create(EventType.TASK_STARTED, "after"))
    run = bus.history(correlation_id="run-7")
    assert [e.type for e in run] == [
        EventType.TASK_STARTED,
        EventType.TASK_COMPLETED,
        EventType.TASK_FAILED,
    ]
    assert bus.history()[-1].correlation_id is None
    assert run[-1].id == built_before.id  # the tagged copy keeps the event's identity


def test_event_created_in_a_handler_carries_its_cause(bus: EventBus) -> None:
    """Event.create inside a handler gets the handled event as parent_id and its run."""
    made: list[Event[Any]] = []

    def handler(e: Event[Any]) -> None:
        made.append(Event.create(EventType.TASK_COMPLETED))
        bus.publish_event(made[-1])

    bus.subscribe(EventType.TASK_STARTED, handler)
    first = bus.publish(EventType.TASK_STARTED, correlation_id="r1")
    assert made[0].parent_id == first
    assert made[0].correlation_id == "r1"
    recorded = bus.history(EventType.TASK_COMPLETED)[0]
    assert recorded.parent_id == first
    assert recorded.correlation_id == "r1"


def test_request_reply_with_the_id_known_before_handlers_run(bus: EventBus) -> None:
    """The documented request/reply pattern: build the request, wait for its reply, publish."""

    def responder(request: Event[Any]) -> None:  # a service answering requests
        bus.publish(EventType.TASK_COMPLETED, {"answer": request.data["q"] * 2})

    bus.subscribe(EventType.TASK_STARTED, responder)
    with correlate("req-run"):
        request = Event.create(EventType.TASK_STARTED, {"q": 21})
        replies: list[Event[Any]] = []
        with bus.subscribe(
            EventType.TASK_COMPLETED, replies.append, filter=lambda e: e.parent_id == request.id
        ):
            bus.publish_event(request)
    assert [r.data for r in replies] == [{"answer": 42}]
    assert replies[0].correlation_id == "req-run"

"""Tests for Event, EventType, ids and typed event keys."""

from __future__ import annotations

import enum
import os
import pickle
from types import MappingProxyType

import attrs
import pytest

from atlas_events import ANY, Event, EventBus, EventKey, EventType, declare
from atlas_events._ids import new_id, process_prefix
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
        attrs.evolve(ev, type="task.started")
    with pytest.raises(InvalidEventTypeError):
        Event.create(ANY)


def test_event_create_copies_metadata_to_read_only() -> None:
    """Event.create freezes metadata into a read-only mapping."""
    ev = Event.create(Color.RED, metadata={"x": 1})
    assert isinstance(ev.metadata, MappingProxyType)
    assert ev.seq == -1


def test_ids_are_unique_and_prefixed() -> None:
    """Ids are unique in the process and carry the process's random prefix."""
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(i.startswith(process_prefix() + "-") for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_new_id_prefix() -> None:
    """A forked child never hands out ids from its parent's sequence."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        os.write(w, new_id().encode())
        os._exit(0)
    os.close(w)
    child_id = os.read(r, 200).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert child_id.split("-")[0] != process_prefix()


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


def test_event_equality_is_by_value() -> None:
    """Two events with equal fields compare equal."""
    ev = Event.create(_Plain.A, 1)
    assert attrs.evolve(ev) == ev

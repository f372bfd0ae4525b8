"""The wire codec: envelope round trips, registry, size cap, malformed entries."""

from __future__ import annotations

import dataclasses
import enum
import json
import pickle
from typing import Any

import attrs
import msgspec
import pytest

from atlas_events import Event, EventType
from atlas_events.bridges.codec import WIRE_VERSION, Codec
from atlas_events.exceptions import (
    AtlasEventsError,
    CodecError,
    PayloadTooLargeError,
    UnregisteredTypeError,
)


class Shop(enum.Enum):
    ORDER_PLACED = "placed"
    ORDER_SHIPPED = "shipped"


@attrs.frozen
class Order:
    order_id: str
    amount: int
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class Parcel:
    weight: float


class Unregistered:
    pass


def _event(event_type: enum.Enum, data: Any = None, **kw: Any) -> Event[Any]:
    return Event.create(event_type, data, **kw)


def test_round_trip_keeps_every_field() -> None:
    """Id, type, payload, timestamp, source, metadata, scope, causation, correlation survive."""
    codec = Codec()
    base = _event(EventType.TASK_COMPLETED, {"x": [1, 2]}, source="planner", metadata={"k": 1})
    ev = Event(
        base.id,
        base.type,
        base.data,
        base.timestamp,
        base.source,
        base.metadata,
        ("agents", "planner"),
        "parent-1",
        7,
        "run-9",
        None,
    )
    raw = codec.encode(ev, origin="node-a", incarnation="inc", seq=42)
    origin, incarnation, seq, out = codec.decode(raw)
    assert (origin, incarnation, seq) == ("node-a", "inc", 42)
    assert out.id == ev.id
    assert out.type is EventType.TASK_COMPLETED
    assert out.data == {"x": [1, 2]}
    assert out.timestamp == ev.timestamp
    assert out.source == "planner"
    assert dict(out.metadata) == {"k": 1}
    assert out.scope == ("agents", "planner")
    assert out.parent_id == "parent-1"
    assert out.correlation_id == "run-9"
    assert out.origin == "node-a"
    assert out.is_remote
    assert out.seq == -1


def test_envelope_is_versioned_json_never_pickle() -> None:
    """The wire format is a JSON object with a version; optional keys are omitted."""
    raw = Codec().encode(_event(EventType.TASK_STARTED), origin="n", incarnation="i", seq=1)
    doc = json.loads(raw)
    assert doc["v"] == WIRE_VERSION
    assert doc["t"] == "task.started"
    assert {"md", "p", "src", "sc", "pid", "cid"}.isdisjoint(doc)
    assert not raw.startswith(b"\x80")  # not a pickle


def test_origin_prefix_matches_what_encode_writes() -> None:
    """A node can spot its own entries by their first bytes, even with odd characters."""
    codec = Codec()
    for origin in ("node-a", 'we"ird\\node', "ünï"):
        raw = codec.encode(_event(EventType.TASK_STARTED), origin=origin, incarnation="i", seq=1)
        assert raw.startswith(codec.origin_prefix(origin))
        assert not raw.startswith(codec.origin_prefix(origin + "x"))


def test_registered_payload_classes_round_trip() -> None:
    """attrs classes and dataclasses come back as instances of the same class."""
    codec = Codec(enums=[Shop], payloads=[Order, Parcel])
    order = Order("o1", 250, ("gift",))
    _, _, _, out = codec.decode(
        codec.encode(_event(Shop.ORDER_PLACED, order), origin="n", incarnation="i", seq=1)
    )
    assert out.type is Shop.ORDER_PLACED
    assert out.data == order
    _, _, _, out = codec.decode(
        codec.encode(_event(Shop.ORDER_SHIPPED, Parcel(1.5)), origin="n", incarnation="i", seq=2)
    )
    assert out.data == Parcel(1.5)


def test_enum_names_and_prefix() -> None:
    """User enums travel as 'Class.MEMBER' (or a chosen prefix); EventType by value."""
    codec = Codec()
    codec.register_enum(Shop, prefix="shop.v1")
    assert codec.type_name(Shop.ORDER_PLACED) == "shop.v1.ORDER_PLACED"
    assert codec.event_type("shop.v1.ORDER_SHIPPED") is Shop.ORDER_SHIPPED
    assert codec.type_name(EventType.BRIDGE_CONNECTED) == "bridge.connected"


def test_registry_conflicts_are_refused() -> None:
    """A name or a member can be registered once; re-registering identically is fine."""
    codec = Codec(enums=[Shop])
    codec.register_enum(Shop)
    with pytest.raises(ValueError, match="already registered"):
        codec.register_type(Shop.ORDER_PLACED, "other")
    with pytest.raises(ValueError, match="already registered"):
        codec.register_type(EventType.TASK_FAILED, "Shop.ORDER_PLACED")
    codec.register_payload(Order)
    codec.register_payload(Order)
    with pytest.raises(ValueError, match="already registered"):
        codec.register_payload(Order, "another-name")
    with pytest.raises(ValueError, match="plain JSON"):
        codec.register_payload(dict)
    with pytest.raises(TypeError):
        codec.register_type("not-an-enum", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        codec.register_type(Shop.ORDER_PLACED, " ")


def test_unregistered_type_or_payload_fails_to_encode() -> None:
    """Encoding names what is missing, with the event id."""
    codec = Codec()
    with pytest.raises(UnregisteredTypeError, match=r"Shop\.ORDER_PLACED") as info:
        codec.encode(_event(Shop.ORDER_PLACED), origin="n", incarnation="i", seq=1)
    assert info.value.kind == "event type"
    ev = _event(EventType.TASK_STARTED, Unregistered())
    with pytest.raises(UnregisteredTypeError, match="Unregistered") as info2:
        codec.encode_parts(ev)
    assert info2.value.event_id == ev.id
    assert info2.value.reason == "unknown-payload"


def test_unencodable_payload_is_a_codec_error() -> None:
    """A dict holding an arbitrary object cannot go on the wire."""
    with pytest.raises(CodecError, match="cannot be encoded") as info:
        Codec().encode_parts(_event(EventType.TASK_STARTED, {"obj": object()}))
    assert info.value.reason == "unencodable"
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AtlasEventsError)


def test_size_cap_counts_payload_and_metadata() -> None:
    """Exactly at the cap passes, one byte more is refused with the sizes."""
    codec = Codec(max_payload_bytes=100)
    fits = "x" * 98  # JSON adds two quotes
    codec.encode_parts(_event(EventType.TASK_STARTED, fits))
    with pytest.raises(PayloadTooLargeError) as info:
        codec.encode_parts(_event(EventType.TASK_STARTED, fits, metadata={"a": 1}))
    err = info.value
    assert (err.size, err.limit) == (100 + len(b'{"a":1}'), 100)
    assert "over the 100-byte cap" in str(err)
    assert err.reason == "oversized"


def test_oversized_entry_is_refused_on_decode() -> None:
    """A bigger sender's entry is refused by a node with a smaller cap."""
    big = Codec(max_payload_bytes=10_000)
    raw = big.encode(
        _event(EventType.TASK_STARTED, "y" * 5_000), origin="n", incarnation="i", seq=1
    )
    with pytest.raises(PayloadTooLargeError):
        Codec(max_payload_bytes=1_000).decode(raw)
    with pytest.raises(PayloadTooLargeError):
        Codec(max_payload_bytes=1).decode(b"{" + b" " * 70_000 + b"}")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"v": 1}', "malformed"),
        (b'{"v": 2, "whatever": true}', "version"),
        (
            b'{"v":1,"o":"n","i":"i","s":1,"id":"x","t":"no.such.type","ts":1.0}',
            "unknown-type",
        ),
        (
            b'{"v":1,"o":"n","i":"i","s":1,"id":"x","t":"task.started","ts":1.0,"p":"nope"}',
            "unknown-payload",
        ),
        (
            b'{"v":1,"o":"n","i":"i","s":1,"id":"x","t":"task.started","ts":1.0,'
            b'"p":"tests.bridges.test_codec.Order","d":{"order_id":3}}',
            "bad-payload",
        ),
        (b'{"v":1,"o":"","i":"i","s":1,"id":"x","t":"task.started","ts":1.0}', "malformed"),
        (
            b'{"v":1,"o":"n","i":"i","s":1,"id":"x","t":"task.started","ts":1.0,"md":[1]}',
            "bad-payload",
        ),
    ],
)
def test_undecodable_entries_have_a_reason(raw: bytes, reason: str) -> None:
    """Every way an entry can be bad maps to a CodecError with a reason."""
    codec = Codec(payloads=[Order])
    with pytest.raises(CodecError) as info:
        codec.decode(raw)
    assert info.value.reason == reason


def test_unknown_fields_are_ignored() -> None:
    """A same-version envelope with extra keys still decodes (forward compatible)."""
    raw = b'{"v":1,"o":"n","i":"i","s":3,"id":"x","t":"task.started","ts":1.0,"new":1}'
    assert Codec().decode(raw).seq == 3


def test_untyped_payloads_round_trip_as_json() -> None:
    """Tuples arrive as lists; nested plain values survive."""
    codec = Codec()
    payload = {"a": (1, 2), "b": {"c": None, "d": 1.5, "e": True}, "f": "ü"}
    out = codec.decode(
        codec.encode(_event(EventType.TASK_STARTED, payload), origin="n", incarnation="i", seq=1)
    ).event
    assert out.data == {"a": [1, 2], "b": {"c": None, "d": 1.5, "e": True}, "f": "ü"}


def test_codec_errors_pickle() -> None:
    """The new exceptions keep their attributes through pickle (multiprocessing)."""
    err = PayloadTooLargeError(10, 5, event_id="e1", event_type=EventType.TASK_STARTED)
    back = pickle.loads(pickle.dumps(err))
    assert (back.size, back.limit, back.event_id, str(back)) == (10, 5, "e1", str(err))


def test_max_payload_bytes_is_validated() -> None:
    """The cap must be a positive int."""
    with pytest.raises(ValueError, match="max_payload_bytes"):
        Codec(max_payload_bytes=0)
    main_class = attrs.frozen(type("Local", (), {"__module__": "__main__", "__annotations__": {}}))
    with pytest.raises(ValueError, match="explicit wire name"):
        Codec().register_payload(main_class)
    Codec().register_payload(main_class, "app.Local")
    with pytest.raises(TypeError, match="msgspec cannot decode"):
        Codec().register_payload(type("Weird", (), {"__init__": lambda self, x: None}))
    assert isinstance(msgspec.json.encode({"a": 1}), bytes)

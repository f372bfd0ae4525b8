"""The JSON serializer behind the dashboard: payload types, redaction, the size cap."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import time
import uuid
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import attrs
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_events import Event, EventBus, EventType
from atlas_events.middleware import Redact
from atlas_events.web import MIN_EVENT_BYTES, EventEncoder, to_jsonable

from .conftest import inject, malformed_event


class Mood(enum.Enum):
    CALM = "calm"


@attrs.frozen
class Login:
    user: str
    password: str
    when: datetime.datetime


@dataclasses.dataclass
class Blob:
    name: str
    body: bytes
    tags: set[str]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def recorded(bus: EventBus, data: Any, **kw: Any) -> Event[Any]:
    """Publish ``data`` and return the recorded event."""
    bus.publish(EventType.TASK_STARTED, data, **kw)
    return bus.history()[-1]


def test_plain_json_types_pass_through() -> None:
    """JSON-native values are unchanged (tuples become lists)."""
    value = {"a": [1, 2.5, "x", None, True], "b": (1, 2)}
    assert to_jsonable(value) == {"a": [1, 2.5, "x", None, True], "b": [1, 2]}


def test_rich_types_convert() -> None:
    """attrs, dataclasses, enums, datetimes, bytes, sets, UUIDs, paths, decimals, floats."""
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
    uid = uuid.UUID(int=7)
    out = to_jsonable(
        {
            "login": Login("ana", "hunter2", when),
            "blob": Blob("b", b"\x00\xffhi", {"t"}),
            "mood": Mood.CALM,
            "type": EventType.TASK_STARTED,
            "day": when.date(),
            "span": datetime.timedelta(seconds=90),
            "id": uid,
            "path": PurePosixPath("/tmp/x"),
            "price": Decimal("1.10"),
            "nan": float("nan"),
            "inf": float("-inf"),
            Mood.CALM: "enum key",
            3: "int key",
        }
    )
    assert out["login"] == {
        "$type": "Login",
        "user": "ana",
        "password": "hunter2",
        "when": "2024-05-01T12:30:00+00:00",
    }
    assert out["blob"] == {
        "$type": "Blob",
        "name": "b",
        "body": {"$bytes": "AP9oaQ=="},
        "tags": ["t"],
    }
    assert out["mood"] == "Mood.CALM"
    assert out["type"] == "EventType.TASK_STARTED"
    assert out["day"] == "2024-05-01"
    assert out["span"] == 90.0
    assert out["id"] == str(uid)
    assert out["path"] == "/tmp/x"
    assert out["price"] == "1.10"
    assert out["nan"] == {"$unrepresentable": "non-finite float", "type": "float", "value": "nan"}
    assert out["inf"] == {"$unrepresentable": "non-finite float", "type": "float", "value": "-inf"}
    assert out["Mood.CALM"] == "enum key"
    assert out["3"] == "int key"
    json.dumps(out, allow_nan=False)  # strict JSON


def test_unknown_objects_become_their_repr() -> None:
    """Unknown objects are shown by repr; a repr that raises does not break anything."""
    out = to_jsonable({"o": Opaque(), "b": BrokenRepr(), "e": ValueError("bad")})
    assert out["o"] == "<Opaque thing>"
    assert out["b"] == {"$unrepresentable": "repr failed", "type": "BrokenRepr"}
    assert out["e"] == "ValueError('bad')"


def test_cycles_and_depth_are_bounded() -> None:
    """A self-referencing payload and a very deep one both serialize."""
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    assert to_jsonable(loop) == {
        "name": "loop",
        "self": {"$unrepresentable": "cycle", "type": "dict"},
    }
    deep: list[Any] = []
    node = deep
    for _ in range(200):
        node.append([])
        node = node[0]
    json.dumps(to_jsonable(deep))


def test_redaction_reuses_redact_matching() -> None:
    """Keys matched by ``Redact`` are masked in mappings and in attrs/dataclass fields."""
    redact = Redact()
    out = to_jsonable(
        {
            "user": "ana",
            "Password": "p",
            "x-auth-token": "t",
            "tokens": 5,
            "nested": [{"api_key": "k"}],
            "login": Login("ana", "hunter2", datetime.datetime(2024, 1, 1)),
        },
        redact=redact,
    )
    assert out["Password"] == "***"
    assert out["x-auth-token"] == "***"
    assert out["tokens"] == 5  # "tokens" is not the word "token"
    assert out["nested"] == [{"api_key": "***"}]
    assert out["login"]["password"] == "***"
    assert out["login"]["user"] == "ana"
    custom = to_jsonable({"pin": 1234, "password": "p"}, redact=Redact(["pin"]))
    assert custom == {"pin": "***", "password": "p"}


def test_header_pairs_and_odd_keys_are_redacted() -> None:
    """Header pairs, ``bytes`` keys, enum keys and run-together env names are masked."""
    out = to_jsonable(
        {
            "headers": [("Authorization", "Bearer hunter2"), ("Accept", "text/html")],
            "asgi": [[b"x-api-key", b"hunter2"]],
            "env": {"PGPASSWORD": "hunter2", b"client-secret": "hunter2"},
        },
        redact=Redact(),
    )
    assert out["headers"] == [["Authorization", "***"], ["Accept", "text/html"]]
    assert out["asgi"][0][1] == "***"
    assert "hunter2" not in repr(out)


def test_event_json_shape(bus: EventBus) -> None:
    """An event's JSON carries the envelope fields and converted data and metadata."""
    child = bus.scope("agents").scope("planner")
    child.publish(
        EventType.TASK_STARTED,
        {"task": "plan", "secret": "s"},
        source="planner",
        metadata={"authorization": "Bearer x", "host": "h"},
        correlation_id="run-1",
    )
    ev = bus.history()[-1]
    obj = json.loads(EventEncoder(redact=Redact()).to_json(ev))
    assert obj == {
        "seq": ev.seq,
        "id": ev.id,
        "type": "EventType.TASK_STARTED",
        "timestamp": ev.timestamp,
        "source": "planner",
        "scope": ["agents", "planner"],
        "correlation_id": "run-1",
        "parent_id": None,
        "origin": None,
        "metadata": {"authorization": "***", "host": "h"},
        "data": {"task": "plan", "secret": "***"},
    }
    assert ev.data == {"task": "plan", "secret": "s"}  # the bus's event is untouched


def test_sse_frame_format(bus: EventBus) -> None:
    """A frame is ``id``/``event``/``data`` lines and a blank line; JSON has no newline."""
    ev = recorded(bus, {"text": "two\nlines\r\n"})
    frame = EventEncoder().frame(ev).sse.decode()
    lines = frame.split("\n")
    assert lines[0] == f"id: {ev.seq}"
    assert lines[1] == "event: EventType.TASK_STARTED"
    assert lines[2].startswith("data: {")
    assert lines[3:] == ["", ""]
    assert json.loads(lines[2][6:])["data"] == {"text": "two\nlines\r\n"}


def test_oversized_payload_is_truncated_and_marked(bus: EventBus) -> None:
    """A payload over the cap is replaced by a marked preview; the JSON fits the cap."""
    enc = EventEncoder(max_event_bytes=2048)
    ev = recorded(bus, {"blob": "x" * 100_000, "quote": '"\\' * 5000})
    text = enc.to_json(ev)
    assert len(text.encode()) <= 2048
    obj = json.loads(text)
    assert obj["truncated"] is True
    assert obj["seq"] == ev.seq
    assert obj["type"] == "EventType.TASK_STARTED"
    marker = obj["data"]
    assert marker["$truncated"] is True
    assert marker["bytes_at_least"] > 2048
    assert marker["preview"].startswith('{"blob":"xxxx')
    small = json.loads(enc.to_json(recorded(bus, {"ok": True})))
    assert "truncated" not in small


def test_oversized_metadata_is_truncated_too(bus: EventBus) -> None:
    """When metadata alone is too big, it is cut as well."""
    enc = EventEncoder(max_event_bytes=MIN_EVENT_BYTES)
    ev = recorded(bus, "small", metadata={"m": "y" * 10_000})
    text = enc.to_json(ev)
    assert len(text) <= MIN_EVENT_BYTES
    obj = json.loads(text)
    assert obj["data"] == "small"
    assert obj["metadata"]["$truncated"] is True


def test_huge_payloads_cost_bounded_time(bus: EventBus) -> None:
    """A million-element payload is cut while converting, not after."""
    enc = EventEncoder(max_event_bytes=4096)
    ev = recorded(
        bus, {"items": list(range(1_000_000)), "nested": [[i] * 100 for i in range(1000)]}
    )
    t0 = time.perf_counter()
    text = enc.to_json(ev)
    assert time.perf_counter() - t0 < 0.5
    assert len(text) <= 4096
    assert json.loads(text)["truncated"] is True


def test_encoder_caches_per_event(bus: EventBus) -> None:
    """Many clients of one event share one encoding."""
    enc = EventEncoder()
    ev = recorded(bus, {"a": 1})
    assert enc.frame(ev) is enc.frame(ev)
    assert enc.to_json(ev) is enc.to_json(ev)


def test_cap_must_leave_room() -> None:
    """A cap below MIN_EVENT_BYTES is refused."""
    with pytest.raises(ValueError, match="max_event_bytes"):
        EventEncoder(max_event_bytes=100)


# ---------------------------------------------------------- total, never raises


class ReprRaises:
    def __repr__(self) -> str:
        raise ValueError("no")


class ItemsRaise(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("items exploded")


class Row(NamedTuple):
    name: str
    password: str


class Card(msgspec.Struct):
    holder: str
    api_key: str


def test_huge_ints_and_big_int_strings_are_placeholders() -> None:
    """Ints beyond 2**53 (and beyond Python's str() digit limit) become counted placeholders."""
    out = to_jsonable({"ok": 2**53, "big": 2**64, "giant": 10**5000, "neg": -(2**70)})
    assert out["ok"] == 2**53
    assert out["big"] == {
        "$unrepresentable": "int beyond 2**53",
        "type": "int",
        "value": str(2**64),
    }
    assert out["giant"]["$unrepresentable"] == "int beyond 2**53"
    assert out["neg"]["value"] == str(-(2**70))
    json.dumps(out, allow_nan=False)


def test_structured_payload_kinds_are_objects_and_redacted() -> None:
    """NamedTuple and msgspec payloads show as typed objects with secret fields masked."""
    out = to_jsonable([Row("a", "hunter2"), Card(holder="b", api_key="AKIA")], redact=Redact())
    assert out == [
        {"$type": "Row", "name": "a", "password": "***"},
        {"$type": "Card", "holder": "b", "api_key": "***"},
    ]


def test_a_mapping_that_raises_is_a_placeholder() -> None:
    """Even a container whose iteration raises yields JSON, not an exception."""
    out = to_jsonable({"bad": ItemsRaise(a=1)})
    assert out["bad"]["$unrepresentable"] == "conversion failed"
    assert out["bad"]["error"] == "RuntimeError"
    json.dumps(out, allow_nan=False)


def test_malformed_envelope_is_marked_and_sent_without_id(bus: EventBus) -> None:
    """A non-finite timestamp or bytes source: placeholders, ``malformed``, no SSE id."""
    enc = EventEncoder()
    for changes, field in (
        ({"timestamp": float("nan")}, "timestamp"),
        ({"timestamp": float("inf")}, "timestamp"),
        ({"source": b"svc"}, "source"),
        ({"correlation_id": 7}, "correlation_id"),
    ):
        inject(bus, malformed_event(data={"x": 1}, **changes))
        ev = bus.history()[-1]
        frame = enc.frame(ev)
        assert frame.malformed
        obj = json.loads(frame.text)
        assert obj["malformed"] == [field]
        assert obj["seq"] == ev.seq
        assert obj["data"] == {"x": 1}
        assert "$unrepresentable" in obj[field]
        sse = frame.sse.decode()
        assert sse.startswith("event: malformed\ndata: {")
        assert "\nid:" not in sse
        assert not sse.startswith("id:")
    assert enc.placeholders == 4


payload_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**60, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.builds(ReprRaises),
    st.builds(Opaque),
    st.sampled_from([Mood.CALM, EventType.TASK_STARTED]),
    st.builds(Row, st.text(max_size=3), st.text(max_size=3)),
)


def _nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    hashable = st.one_of(st.text(max_size=4), st.integers(), st.booleans(), st.none())
    return st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.frozensets(hashable, max_size=3),
        st.sets(hashable, max_size=3),
        st.dictionaries(
            st.one_of(
                st.text(max_size=6),
                st.integers(),
                st.sampled_from(["password", "apiKey", "X-Api-Key"]),
            ),
            inner,
            max_size=4,
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(payload_leaf, _nest, max_leaves=40), st.booleans())
def test_fuzz_any_payload_encodes(payload: Any, make_cycle: bool) -> None:
    """Arbitrary nested payloads (NaN/inf, bytes, sets, cycles, huge ints, broken reprs) encode.

    The event's JSON is strict (no NaN), parses, fits the cap, and never holds
    a secret under a secret key.
    """
    if make_cycle and isinstance(payload, list):
        payload.append(payload)
    bus = EventBus()
    bus.publish(EventType.TASK_STARTED, payload, metadata={"m": payload})
    ev = bus.history()[-1]
    enc = EventEncoder(redact=Redact(), max_event_bytes=MIN_EVENT_BYTES * 8)
    frame = enc.frame(ev)
    obj = json.loads(frame.text)  # strict JSON
    assert len(frame.text) <= MIN_EVENT_BYTES * 8
    assert obj["seq"] == ev.seq
    assert not frame.malformed
    assert frame.sse.startswith(f"id: {ev.seq}\n".encode())
    json.dumps(obj, allow_nan=False)


def test_url_passwords_are_masked_when_redacting() -> None:
    """Connection strings lose their password on the dashboard, not without redaction."""
    payload = {"dsn": "postgres://app:hunter2@db/prod", "n": "a@b"}
    assert to_jsonable(payload, redact=Redact()) == {
        "dsn": "postgres://app:***@db/prod",
        "n": "a@b",
    }
    assert to_jsonable(payload) == payload


def test_a_broken_value_costs_only_its_own_place() -> None:
    """A value whose iteration or items() raises becomes a placeholder; its siblings stay."""

    class BadIter(list[int]):
        def __iter__(self) -> Any:
            raise RuntimeError("iter")

    class BadItems(dict[str, int]):
        def items(self) -> Any:
            raise RuntimeError("items")

    out = to_jsonable({"ok": 1, "it": BadIter([1]), "m": BadItems(a=1), "l": [2, BadIter()]})
    assert out["ok"] == 1
    assert out["it"]["$unrepresentable"] == "conversion failed"
    assert out["it"]["error"] == "RuntimeError"
    assert out["it"]["type"].endswith("BadIter")
    assert out["m"]["type"].endswith("BadItems")
    assert out["l"][0] == 2
    assert out["l"][1]["$unrepresentable"] == "conversion failed"

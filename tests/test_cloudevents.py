"""Event <-> CloudEvents 1.0 JSON: round trips, the attribute mapping, the official SDK."""

from __future__ import annotations

import enum
import json
from typing import Any, cast

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_events import Event, EventBus, EventType
from atlas_events.cloudevents import (
    DEFAULT_SOURCE,
    from_cloudevent,
    from_json,
    to_cloudevent,
    to_json,
    type_name,
)
from atlas_events.exceptions import CodecError

from .conftest import Color


class Order(enum.StrEnum):
    """A user enum with str values (mapped to its values)."""

    CREATED = "com.example.order.created"
    PAID = "com.example.order.paid"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.text(st.characters(blacklist_characters="/", blacklist_categories=["Cs"]), min_size=1)
ids = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30)
metadata = st.dictionaries(st.text(max_size=10), json_values, max_size=3) | st.fixed_dictionaries(
    {"traceparent": st.just("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
    optional={"tracestate": st.just("congo=t61rcWkgMzE"), "user": json_values},
)


@st.composite
def events(draw: st.DrawFn) -> Event[Any]:
    """Any event the mapping supports: JSON payloads, every optional field set or not."""
    member = draw(st.sampled_from([*EventType, *Order, *Color]))
    return Event(
        draw(ids),
        member,
        draw(json_values),
        draw(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False)),
        draw(st.none() | ids.filter(lambda s: s != DEFAULT_SOURCE)),
        draw(metadata),
        tuple(draw(st.lists(names, max_size=3))),
        draw(st.none() | ids),
        -1,
        draw(st.none() | ids),
        None,
    )


@given(events())
@settings(max_examples=300, deadline=None)
def test_round_trip_through_json(event: Event[Any]) -> None:
    """from_json(to_json(e)) == e for every supported event (timestamps exactly)."""
    back = from_json(to_json(event), types=[Order, Color])
    assert back == event
    assert back.timestamp == event.timestamp


def test_attribute_mapping() -> None:
    """Each field lands in the CloudEvents attribute the spec and our docs name."""
    ev = Event(
        "ev-1",
        EventType.TASK_COMPLETED,
        {"ok": True},
        1700000000.25,
        "planner",
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "k": 1},
        ("agents", "planner"),
        "ev-0",
        -1,
        "run-7",
        None,
    )
    ce = to_cloudevent(ev)
    assert ce == {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "planner",
        "type": "task.completed",
        "time": "2023-11-14T22:13:20.25Z",
        "datacontenttype": "application/json",
        "subject": "agents/planner",
        "correlationid": "run-7",
        "causationid": "ev-0",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "atlasmetadata": '{"k":1}',
        "data": {"ok": True},
    }
    assert type_name(Color.RED) == "Color.RED"
    assert type_name(Order.PAID) == "com.example.order.paid"


def test_recorded_event_comes_back_new() -> None:
    """seq and origin are the recording bus's: a decoded event is unrecorded and local."""
    with EventBus() as bus:
        bus.publish(EventType.TASK_STARTED, [1], source="s")
        [recorded] = bus.history()
    back = from_json(to_json(recorded))
    assert back.seq == -1
    assert back.id == recorded.id
    assert back.data == [1]


def test_time_offsets_and_foreign_extensions() -> None:
    """A time with an offset is converted to epoch seconds; unknown extensions become metadata."""
    ce = {
        "specversion": "1.0",
        "id": "x",
        "source": "/elsewhere",
        "type": "task.started",
        "time": "2023-11-15T00:13:20.5+02:00",
        "partitionkey": "p1",
    }
    ev = from_cloudevent(ce)
    assert ev.timestamp == 1700000000.5
    assert ev.metadata == {"partitionkey": "p1"}
    assert ev.source == "/elsewhere"
    assert ev.scope == ()


@pytest.mark.parametrize(
    ("ce", "fragment"),
    [
        ({"id": "x", "source": "s", "type": "task.started"}, "specversion"),
        ({"specversion": "1.0", "source": "s", "type": "task.started"}, "'id'"),
        ({"specversion": "1.0", "id": "x", "type": "task.started"}, "'source'"),
        ({"specversion": "1.0", "id": "x", "source": "s", "type": "nope"}, "nope"),
        (
            {"specversion": "1.0", "id": "x", "source": "s", "type": "task.started", "time": "now"},
            "RFC 3339",
        ),
        (
            {
                "specversion": "1.0",
                "id": "x",
                "source": "s",
                "type": "task.started",
                "datacontenttype": "text/plain",
            },
            "JSON data",
        ),
    ],
)
def test_malformed_cloudevents_are_codec_errors(ce: dict[str, Any], fragment: str) -> None:
    """Missing or malformed attributes raise CodecError naming the problem."""
    with pytest.raises(CodecError, match=fragment):
        from_cloudevent(ce)


def test_unencodable_payload_and_encode_data_hook() -> None:
    """A non-JSON payload is a CodecError; encode_data/decode_data convert it."""
    ev = Event.create(EventType.TASK_STARTED, {1, 2})
    with pytest.raises(CodecError, match="encode_data"):
        to_json(ev)
    doc = to_json(ev, encode_data=sorted)
    back = from_json(doc, decode_data=lambda _t, d: set(d))
    assert back.data == {1, 2}
    with pytest.raises(CodecError, match="not a JSON"):
        from_json("{")


def test_clashing_type_names_are_refused() -> None:
    """Two enums claiming one CloudEvents type name is a clear error."""

    class Clash(enum.StrEnum):
        X = "task.started"

    with pytest.raises(ValueError, match=r"task\.started"):
        from_cloudevent(
            {"specversion": "1.0", "id": "1", "source": "s", "type": "x"}, types=[Clash]
        )


sdk_json = pytest.importorskip("cloudevents.core.formats.json", reason="cloudevents SDK")


@given(events())
@settings(max_examples=100, deadline=None)
def test_official_sdk_reads_what_we_write(event: Event[Any]) -> None:
    """The official cloudevents SDK parses our JSON and sees the same attributes."""
    if abs(event.timestamp) < 1e-3:  # the SDK reads times to the microsecond only
        event = attrs.evolve(event, timestamp=1.0)
    ce = sdk_json.JSONFormat().read(None, to_json(event))
    assert ce.get_id() == event.id
    assert ce.get_type() == type_name(event.type)
    assert ce.get_source() == (event.source or DEFAULT_SOURCE)
    assert ce.get_subject() == ("/".join(event.scope) or None)
    assert ce.get_extension("correlationid") == event.correlation_id
    assert ce.get_extension("causationid") == event.parent_id
    assert abs(ce.get_time().timestamp() - event.timestamp) < 1e-5
    assert ce.get_data() == event.data


def test_we_read_what_the_official_sdk_writes() -> None:
    """A CloudEvent built and serialised by the SDK decodes into the matching Event."""
    from cloudevents.core.v1.event import CloudEvent

    sdk_event = CloudEvent(
        {
            "id": "sdk-1",
            "source": "/billing",
            "type": "com.example.order.paid",
            "specversion": "1.0",
            "subject": "shop/eu",
            "datacontenttype": "application/json",
            "correlationid": "run-1",
        },
        {"amount": 3},
    )
    ev = from_json(sdk_json.JSONFormat().write(sdk_event), types=[Order])
    assert ev.type is Order.PAID
    assert ev.scope == ("shop", "eu")
    assert ev.correlation_id == "run-1"
    assert ev.data == {"amount": 3}
    assert json.loads(to_json(ev))["subject"] == "shop/eu"


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (Event.create(EventType.TASK_STARTED, source=""), "source"),
        (Event.create(EventType.TASK_STARTED, metadata=cast(Any, {1: "a"})), "metadata"),
        (Event.create(EventType.TASK_STARTED, metadata={"a": float("nan")}), "metadata"),
        (Event.create(EventType.TASK_STARTED, metadata={"a": {1, 2}}), "metadata"),
        (attrs.evolve(Event.create(EventType.TASK_STARTED), timestamp=1e12), "time"),
        (attrs.evolve(Event.create(EventType.TASK_STARTED), timestamp=-1e12), "time"),
    ],
    ids=["empty-source", "int-key", "nan", "set", "year-33658", "year-before-1"],
)
def test_what_cloudevents_cannot_carry_is_a_codec_error_not_a_bad_document(
    event: Event[Any], fragment: str
) -> None:
    """The encoder never writes a document its decoder (or the spec) refuses, nor a raw error.

    An empty source (the spec needs a non-empty URI-reference), metadata that
    JSON would change (int keys) or cannot hold (NaN, sets), and a time
    outside RFC 3339's years 0001-9999 raise CodecError naming the field.
    """
    for encode in (to_json, to_cloudevent):
        with pytest.raises(CodecError, match=fragment):
            encode(event)


@pytest.mark.parametrize("timestamp", [-46_800_000_000.25, -62_135_596_800.0, 253_402_300_799.5])
def test_times_of_early_and_late_years_round_trip(timestamp: float) -> None:
    """Years 486, 0001 and 9999 are written with four digits and read back exactly."""
    event = attrs.evolve(Event.create(EventType.TASK_STARTED), timestamp=timestamp)
    doc = json.loads(to_json(event))
    assert doc["time"][:5] in {"0486-", "0001-", "9999-"}
    assert from_json(json.dumps(doc)).timestamp == timestamp


_CE = {"specversion": "1.0", "id": "x", "source": "s", "type": "task.started"}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"subject": "a//b"}, "subject"),
        ({"subject": "/a"}, "subject"),
        ({"subject": "a/"}, "subject"),
        ({"correlationid": ""}, "correlationid"),
        ({"causationid": ""}, "causationid"),
    ],
    ids=["empty-middle-scope", "leading-slash", "trailing-slash", "empty-corr", "empty-cause"],
)
def test_decoder_refuses_what_no_event_can_hold(extra: dict[str, Any], fragment: str) -> None:
    """A subject with an empty scope name, or an empty correlation/causation id: CodecError.

    Before, they decoded into events that the bus could never produce (a
    scope named "", a correlation id Event.create refuses).
    """
    with pytest.raises(CodecError, match=fragment):
        from_cloudevent({**_CE, **extra})

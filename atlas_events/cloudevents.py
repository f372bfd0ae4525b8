"""Event <-> CloudEvents 1.0 in the JSON event format (structured mode).

=====================  ==============================================
CloudEvents attribute  :class:`~atlas_events.Event` field
=====================  ==============================================
``id``                 ``id``
``source``             ``source`` (``default_source`` when ``None``)
``type``               ``type``: a str-valued member's value
                       (``"task.completed"``), else ``Enum.MEMBER``
``time``               ``timestamp`` (RFC 3339, UTC, every digit kept)
``subject``            ``scope`` joined with ``"/"`` (absent at the root)
``datacontenttype``    ``"application/json"``; ``data`` is the payload
``correlationid``      ``correlation_id`` (extension)
``causationid``        ``parent_id`` (extension)
``traceparent``,       ``metadata["traceparent"]``, ``["tracestate"]``
``tracestate``         (the Distributed Tracing extension)
``atlasmetadata``      the rest of ``metadata``, as a JSON object string
=====================  ==============================================

``seq`` and ``origin`` belong to the bus that recorded the event and are not
carried: a decoded event is new to the bus it is published on
(:meth:`EventBus.publish_event`). Specification:
https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md and
``formats/json-format.md``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, localcontext
from types import MappingProxyType
from typing import Any, Final

from ._event import EMPTY_METADATA, Event, EventType, trusted_event
from .exceptions import CodecError

__all__ = [
    "DEFAULT_SOURCE",
    "from_cloudevent",
    "from_json",
    "to_cloudevent",
    "to_json",
    "type_name",
]

DEFAULT_SOURCE: Final = "/atlas-events"
"""The ``source`` of an event published without one (and mapped back to ``None``)."""

_TRACE_KEYS: Final = ("traceparent", "tracestate")
_DIGITS: Final = 800
_OWN: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "data",
        "correlationid",
        "causationid",
        "atlasmetadata",
        *_TRACE_KEYS,
    }
)
_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9\-.]+\+)?json(;.*)?$")
_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def type_name(member: enum.Enum) -> str:
    """The CloudEvents ``type`` of an event type member.

    A member with a str value (every :class:`EventType`, any ``StrEnum``)
    maps to that value; others to ``"EnumClass.MEMBER"``.
    """
    return (
        member.value if isinstance(member.value, str) else f"{type(member).__name__}.{member.name}"
    )


def _unencodable(event: Event[Any], field: str, why: str) -> CodecError:
    return CodecError(
        "unencodable",
        f"event {event.id} ({event.type!r}) cannot be a CloudEvent: {field}: {why}",
        event_id=event.id,
    )


def _encode_metadata(event: Event[Any], rest: dict[str, Any]) -> str:
    """The ``atlasmetadata`` JSON string; only what JSON keeps exactly (str keys, no NaN)."""
    if not all(isinstance(key, str) for key in rest):
        raise _unencodable(event, "metadata", "keys must be str (JSON would turn them into str)")
    try:
        return json.dumps(rest, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _unencodable(event, "metadata", str(exc)) from exc


def _format_time(event: Event[Any]) -> str:
    """RFC 3339 in UTC with the float's shortest exact digits (so it parses back equal)."""
    exact = Decimal(repr(event.timestamp))
    seconds = int(exact.to_integral_value(rounding="ROUND_FLOOR"))
    with localcontext(prec=_DIGITS):  # a float's exact decimal has up to ~770 digits
        fraction = exact - seconds
    try:
        whole = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (ValueError, OverflowError, OSError):  # datetime's years are RFC 3339's: 1-9999
        raise _unencodable(
            event, "time", f"timestamp {event.timestamp!r} is outside the years 0001-9999"
        ) from None
    # isoformat pads the year to four digits (strftime's %Y does not, below 1000).
    text = whole.replace(tzinfo=None).isoformat(timespec="seconds")
    if fraction:
        text += "." + format(fraction, "f").split(".")[1]
    return text + "Z"


def _parse_time(text: object) -> float:
    m = _TIME.match(text) if isinstance(text, str) else None
    if m is None:
        raise CodecError("malformed", f"CloudEvent time is not RFC 3339: {text!r}")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    tz = dt.UTC
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        whole = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)
    except ValueError as exc:
        raise CodecError("malformed", f"CloudEvent time {text!r}: {exc}") from None
    with localcontext(prec=_DIGITS):
        return float(Decimal(int(whole.timestamp())) + Decimal("0" + (frac or "")))


def to_cloudevent(
    event: Event[Any],
    *,
    default_source: str = DEFAULT_SOURCE,
    encode_data: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """The CloudEvents 1.0 attributes of ``event``, as a JSON-ready dict.

    Args:
        event: The event.
        default_source: ``source`` for an event without one.
        encode_data: Turns the payload into JSON-ready data (e.g.
            ``attrs.asdict``); by default it is used as is.

    Returns:
        The structured-mode CloudEvent (a dict; :func:`to_json` serialises it).
    """
    source = default_source if event.source is None else event.source
    if not source:
        raise _unencodable(event, "source", "CloudEvents needs a non-empty source")
    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": type_name(event.type),
        "time": _format_time(event),
        "datacontenttype": "application/json",
    }
    if event.scope:
        ce["subject"] = "/".join(event.scope)
    if event.correlation_id is not None:
        ce["correlationid"] = event.correlation_id
    if event.parent_id is not None:
        ce["causationid"] = event.parent_id
    rest = dict(event.metadata)
    for key in _TRACE_KEYS:
        if isinstance(rest.get(key), str):
            ce[key] = rest.pop(key)
    if rest:
        ce["atlasmetadata"] = _encode_metadata(event, rest)
    ce["data"] = event.data if encode_data is None else encode_data(event.data)
    return ce


def to_json(
    event: Event[Any],
    *,
    default_source: str = DEFAULT_SOURCE,
    encode_data: Callable[[Any], Any] | None = None,
) -> str:
    """``event`` as a CloudEvents JSON document (``application/cloudevents+json``).

    Raises:
        CodecError: The payload or metadata is not JSON-encodable.
    """
    ce = to_cloudevent(event, default_source=default_source, encode_data=encode_data)
    try:
        return json.dumps(ce, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CodecError(
            "unencodable",
            f"event {event.id} ({event.type!r}) cannot be encoded as JSON: {exc} "
            "(pass encode_data= to convert the payload)",
            event_id=event.id,
        ) from exc


def _type_table(types: Iterable[type[enum.Enum]]) -> dict[str, enum.Enum]:
    table: dict[str, enum.Enum] = {}
    classes: list[type[enum.Enum]] = [EventType, *types]
    for cls in classes:
        for member in cls:
            name = type_name(member)
            if table.setdefault(name, member) is not member:
                raise ValueError(
                    f"CloudEvents type {name!r} is claimed by {table[name]!r} and {member!r}"
                )
    return table


def _required_str(ce: Mapping[str, Any], key: str) -> str:
    value = ce.get(key)
    if not isinstance(value, str) or not value:
        raise CodecError("malformed", f"CloudEvent {key!r} must be a non-empty str, got {value!r}")
    return value


def _optional_str(ce: Mapping[str, Any], key: str) -> str | None:
    value = ce.get(key)
    if value is not None and not isinstance(value, str):
        raise CodecError("malformed", f"CloudEvent {key!r} must be a str, got {value!r}")
    return value


def _optional_id(ce: Mapping[str, Any], key: str) -> str | None:
    value = _optional_str(ce, key)
    if value == "":
        raise CodecError("malformed", f"CloudEvent {key!r} must not be empty")
    return value


def _scope(subject: str | None) -> tuple[str, ...]:
    """The scope path in ``subject`` (``"a/b"``); every name non-empty."""
    if not subject:
        return ()
    names = tuple(subject.split("/"))
    if "" in names:
        raise CodecError(
            "malformed", f"CloudEvent subject {subject!r} is not a scope path (an empty name)"
        )
    return names


def _metadata(ce: Mapping[str, Any]) -> Mapping[str, Any]:
    md: dict[str, Any] = {}
    raw = _optional_str(ce, "atlasmetadata")
    if raw is not None:
        try:
            md = json.loads(raw)
        except ValueError as exc:
            raise CodecError("malformed", f"CloudEvent atlasmetadata: {exc}") from None
        if not isinstance(md, dict):
            raise CodecError("malformed", "CloudEvent atlasmetadata must be a JSON object")
    for key in _TRACE_KEYS:
        value = _optional_str(ce, key)
        if value is not None:
            md[key] = value
    extensions = {k: v for k, v in ce.items() if k not in _OWN and k != "dataschema"}
    md.update(extensions)  # foreign extensions are kept as metadata
    return MappingProxyType(md) if md else EMPTY_METADATA


def from_cloudevent(
    ce: Mapping[str, Any],
    *,
    types: Iterable[type[enum.Enum]] = (),
    default_source: str = DEFAULT_SOURCE,
    decode_data: Callable[[enum.Enum, Any], Any] | None = None,
) -> Event[Any]:
    """Build an :class:`Event` from a structured-mode CloudEvent dict.

    Args:
        ce: The CloudEvent attributes and ``data``.
        types: Enum classes to resolve ``type`` in, after :class:`EventType`.
        default_source: A ``source`` equal to this becomes ``None``.
        decode_data: ``decode_data(event_type, data)`` rebuilds the payload.

    Returns:
        An unrecorded event (``seq == -1``, ``origin is None``); extensions
        this module does not map are kept in ``metadata``.

    Raises:
        CodecError: Not a CloudEvents 1.0 JSON event (missing or malformed
            attribute, unknown ``type``, non-JSON ``datacontenttype``,
            ``data_base64``).
        ValueError: Two of ``types`` claim the same CloudEvents type.
    """
    if not isinstance(ce, Mapping):
        raise CodecError("malformed", f"a CloudEvent is a JSON object, got {type(ce).__name__}")
    if ce.get("specversion") != "1.0":
        raise CodecError("version", f"unsupported specversion {ce.get('specversion')!r}")
    name = _required_str(ce, "type")
    member = _type_table(types).get(name)
    if member is None:
        raise CodecError("unknown-type", f"no event type is named {name!r} (pass types=)")
    content_type = _optional_str(ce, "datacontenttype")
    if "data_base64" in ce or (content_type is not None and not _JSON_TYPE.match(content_type)):
        raise CodecError("malformed", f"only JSON data is supported, got {content_type!r}")
    source = _required_str(ce, "source")
    scope = _scope(_optional_str(ce, "subject"))
    correlation_id = _optional_id(ce, "correlationid")
    causation_id = _optional_id(ce, "causationid")
    data = ce.get("data")
    return trusted_event(
        _required_str(ce, "id"),
        member,
        data if decode_data is None else decode_data(member, data),
        _parse_time(ce["time"]) if "time" in ce else time.time(),
        None if source == default_source else source,
        _metadata(ce),
        scope,
        causation_id,
        -1,
        correlation_id,
        None,
    )


def from_json(
    document: str | bytes,
    *,
    types: Iterable[type[enum.Enum]] = (),
    default_source: str = DEFAULT_SOURCE,
    decode_data: Callable[[enum.Enum, Any], Any] | None = None,
) -> Event[Any]:
    """Parse a CloudEvents JSON document; see :func:`from_cloudevent`.

    Raises:
        CodecError: Not JSON, or not a CloudEvents 1.0 event.
    """
    try:
        ce = json.loads(document)
    except ValueError as exc:
        raise CodecError("malformed", f"not a JSON document: {exc}") from None
    return from_cloudevent(ce, types=types, default_source=default_source, decode_data=decode_data)

"""JSON for the browser: events and arbitrary payloads, total (never raises) and within a size cap.

Payloads are whatever the publisher passed, so the converter accepts
anything: mappings become objects, lists/tuples/sets arrays, record-like
payloads (attrs, dataclasses, ``NamedTuple``, ``msgspec.Struct``, pydantic
models) objects with a ``"$type"`` key naming the class, enums
``"Enum.MEMBER"``, datetimes ISO 8601 strings, bytes ``{"$bytes": <base64>}``,
and other objects their ``repr``. Nothing is pickled and no HTML is produced.

A value JSON cannot carry faithfully becomes a *placeholder*, an object
``{"$unrepresentable": <reason>, ...}`` (non-finite floats, ints beyond
2**53 -- the largest a browser reads exactly --, cycles, nesting past 32
levels, objects whose ``repr``, iteration or ``items()`` raises -- in that
value's place only, its siblings are kept); each is counted, and the event's
JSON says how many it holds (``"placeholders": N``). So one odd event never
turns into an exception in a response.

The work is bounded: a payload with more nodes than the size cap allows is
cut while it is converted, and an event whose JSON is still over the cap has
its ``data`` (then its ``metadata``) replaced by a marker ``{"$truncated":
true, "bytes_at_least": N, "preview": "<the start of its JSON>"}``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import enum
import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._event import Event
from .._redact import mask_url_credentials, pair_key, structured_fields
from ..middleware import Redact

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "MIN_EVENT_BYTES",
    "EventEncoder",
    "Frame",
    "to_jsonable",
]

DEFAULT_MAX_EVENT_BYTES: Final = 64 * 1024
"""Default cap on one event's JSON, in bytes."""

MIN_EVENT_BYTES: Final = 1024
"""The smallest accepted cap: room for the envelope and a short preview."""

_MAX_DEPTH: Final = 32
_MAX_SAFE_INT: Final = 2**53  # JavaScript's Number.MAX_SAFE_INTEGER + 1
_CUT: Final = "\u2026"  # what stands in for values past the node budget
_dumps = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), check_circular=False
).encode


def _enum_name(value: enum.Enum) -> str:
    return f"{type(value).__name__}.{value.name}"


def _type_name(value: object) -> str:
    return type(value).__qualname__


def _placeholder(reason: str, obj: object, /, **extra: Any) -> dict[str, Any]:
    return {"$unrepresentable": reason, "type": _type_name(obj), **extra}


def _safe_repr(value: object, limit: int) -> str | None:
    """``repr(value)`` cut to ``limit`` characters, or ``None`` if it raises."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the dashboard
        return None
    if not isinstance(text, str):  # pragma: no cover - repr() enforces str
        return None
    if len(text) > limit:
        text = f"{text[:limit]}{_CUT}[{len(text) - limit} more chars]"
    return text


def _int_text(value: int) -> str:
    try:
        text = str(value)
    except ValueError:  # over sys.get_int_max_str_digits()
        return f"<int of {value.bit_length()} bits>"
    return text if len(text) <= 64 else f"{text[:30]}{_CUT}{text[-30:]} ({len(text)} digits)"


class _Converter:
    """One conversion: a node budget, the redaction rule, the cycle guard, the placeholder count."""

    __slots__ = ("budget", "cut", "hidden", "mask", "max_str", "placeholders", "stack")

    def __init__(self, redact: Redact | None, budget: int, max_str: int) -> None:
        self.hidden: Callable[[str], bool] | None = None if redact is None else redact.matches
        self.mask = redact.mask if redact is not None else ""
        self.budget = budget
        self.max_str = max_str
        self.cut = False
        self.placeholders = 0
        self.stack: set[int] = set()

    def placeholder(self, reason: str, obj: object, /, **extra: Any) -> dict[str, Any]:
        self.placeholders += 1
        return _placeholder(reason, obj, **extra)

    def convert(self, value: Any, depth: int = 0) -> Any:
        self.budget -= 1
        if self.budget < 0:
            self.cut = True
            return _CUT
        t = type(value)
        if t is str and len(value) <= self.max_str and "@" not in value:
            return value  # fast path: the bulk of real payloads
        if value is None or t is bool:
            return value
        try:  # free unless it raises (3.11 zero-cost exceptions)
            scalar = _SCALARS.get(t)
            if scalar is not None:
                return scalar(self, value)
            for kind, handler in _KINDS:
                if isinstance(value, kind):
                    return handler(self, value)
            return self.nested(value, depth)
        except Exception as exc:  # e.g. a mapping whose items() raises: this value only
            return self.placeholder("conversion failed", value, error=type(exc).__name__)

    def nested(self, value: Any, depth: int) -> Any:
        if depth >= _MAX_DEPTH:
            self.cut = True
            return self.placeholder("nested too deep", value, depth=depth)
        ident = id(value)
        if ident in self.stack:
            return self.placeholder("cycle", value)
        self.stack.add(ident)
        try:
            return self.container(value, depth + 1)
        finally:
            self.stack.discard(ident)

    def container(self, value: Any, depth: int) -> Any:
        if isinstance(value, Mapping):
            return self.fields(value.items(), depth)
        record = structured_fields(value)
        if record is not None:
            return self.fields(record, depth, type_name=_type_name(value))
        if isinstance(value, list | tuple | set | frozenset):
            return self.items(value, depth)
        text = _safe_repr(value, self.max_str)
        if text is None:
            return self.placeholder("repr failed", value)
        return text

    def items(self, value: Any, depth: int) -> list[Any]:
        hidden = self.hidden
        if hidden is not None:  # a ("Authorization", "Bearer ...") pair: mask its value
            key = pair_key(value)
            if key is not None and hidden(key):
                return [self.convert(value[0], depth), self.mask]
        out: list[Any] = []
        for item in value:
            if self.budget <= 0:
                self.cut = True
                out.append(_CUT)
                break
            out.append(self.convert(item, depth))
        return out

    def fields(self, items: Any, depth: int, *, type_name: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {} if type_name is None else {"$type": type_name}
        hidden = self.hidden
        for key, item in items:
            if self.budget <= 0:
                self.cut = True
                out[_CUT] = _CUT
                break
            name = key if type(key) is str else self.key(key)
            out[name] = (
                self.mask if hidden is not None and hidden(name) else self.convert(item, depth)
            )
        return out

    def key(self, key: object) -> str:
        if isinstance(key, str):
            return str(key)
        if isinstance(key, enum.Enum):
            return _enum_name(key)
        if isinstance(key, bool | int | float) or key is None:
            return str(key) if isinstance(key, float | bool) or key is None else _int_text(key)
        return _safe_repr(key, 200) or f"<{_type_name(key)} key>"

    # ------------------------------------------------------------- scalars

    def string(self, value: str) -> str:
        value = str(value)
        if self.hidden is not None:
            value = mask_url_credentials(value, self.mask)
        if len(value) > self.max_str:
            self.cut = True
            return f"{value[: self.max_str]}{_CUT}[{len(value) - self.max_str} more chars]"
        return value

    def integer(self, value: int) -> Any:
        value = int(value)
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        return self.placeholder("int beyond 2**53", value, value=_int_text(value))

    def real(self, value: float) -> Any:
        value = float(value)
        if math.isfinite(value):
            return value
        return self.placeholder("non-finite float", value, value=str(value))

    def raw(self, value: bytes | bytearray | memoryview) -> dict[str, Any]:
        try:
            data = bytes(value)
        except Exception:  # e.g. a released memoryview
            return self.placeholder("unreadable buffer", value)
        out: dict[str, Any] = {"$bytes": base64.b64encode(data[: self.max_str]).decode()}
        if len(data) > self.max_str:
            self.cut = True
            out["length"] = len(data)
        return out

    def path(self, value: os.PathLike[Any]) -> Any:
        try:
            path = os.fspath(value)
        except Exception:
            return self.placeholder("unreadable path", value)
        return self.string(path) if isinstance(path, str) else self.raw(path)


def _iso(_conv: _Converter, value: datetime.date | datetime.time) -> str:
    return value.isoformat()


def _seconds(_conv: _Converter, value: datetime.timedelta) -> float:
    return value.total_seconds()


def _text(_conv: _Converter, value: object) -> str:
    return str(value)


def _member(_conv: _Converter, value: enum.Enum) -> str:
    return _enum_name(value)


# Exact types first (one dict lookup), then subclasses in this order.
_SCALARS: Final[dict[type, Callable[[_Converter, Any], Any]]] = {
    str: _Converter.string,
    int: _Converter.integer,
    float: _Converter.real,
    bytes: _Converter.raw,
}
_KINDS: Final[tuple[tuple[type | tuple[type, ...], Callable[[_Converter, Any], Any]], ...]] = (
    (enum.Enum, _member),  # before str/int: StrEnum and IntEnum members are shown by name
    (str, _Converter.string),
    (bool, lambda _conv, value: bool(value)),
    (int, _Converter.integer),
    (float, _Converter.real),
    ((bytes, bytearray, memoryview), _Converter.raw),
    ((datetime.date, datetime.time), _iso),
    (datetime.timedelta, _seconds),
    ((uuid.UUID, decimal.Decimal), _text),
    (os.PathLike, _Converter.path),
)


def to_jsonable(
    value: Any,
    *,
    redact: Redact | None = None,
    max_nodes: int = 100_000,
    max_str: int = DEFAULT_MAX_EVENT_BYTES,
) -> Any:
    """Convert ``value`` into plain JSON types (dict, list, str, int, float, bool, None).

    Never raises. See the module docstring for the conversions and placeholders.

    Args:
        value: Any object.
        redact: Mask the values of matching keys (mapping keys and field
            names of record-like payloads) with ``redact.mask``.
        max_nodes: Stop converting after this many values; the rest is
            replaced by ``"\u2026"``.
        max_str: Longer strings (and bytes, and reprs) are cut to this length.

    Returns:
        A value :func:`json.dumps` accepts with ``allow_nan=False``.
    """
    conv = _Converter(redact, max_nodes, max_str)
    try:
        return conv.convert(value)
    except Exception as exc:  # e.g. a mapping whose items() raises
        return _placeholder("conversion failed", value, error=type(exc).__name__)


# ------------------------------------------------------------------ events

_ENVELOPE_STR: Final = ("id", "correlation_id", "parent_id", "origin", "source")


class Frame:
    """One event's encodings, shared by every client: JSON text and SSE message.

    Attributes:
        seq: The event's ``seq``.
        event_id: The event's ``id`` (as recorded, to detect a reused ``seq``).
        text: The event's JSON.
        sse: The Server-Sent Events message (bytes).
        malformed: The event's own fields (not its payload) broke the
            :class:`~atlas_events.Event` contract and were replaced by
            placeholders.
    """

    __slots__ = ("event_id", "malformed", "seq", "sse", "text")

    def __init__(self, seq: int, event_id: object, text: str, sse: bytes, malformed: bool) -> None:
        self.seq = seq
        self.event_id = event_id
        self.text = text
        self.sse = sse
        self.malformed = malformed


def _clean_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "")


class EventEncoder:
    """Turns events into JSON objects for the dashboard, within a byte cap; never raises.

    The JSON object of an event has the keys ``seq``, ``id``, ``type``
    (``"Enum.MEMBER"``), ``timestamp``, ``source``, ``scope`` (a list),
    ``correlation_id``, ``parent_id``, ``origin``, ``metadata`` and ``data``,
    plus ``"truncated": true`` when the cap forced a cut, ``"placeholders":
    N`` when values were replaced by placeholders, and ``"malformed": [...]``
    (the names of the broken fields) when the event's own fields break the
    :class:`~atlas_events.Event` contract (a non-finite ``timestamp``, a
    ``bytes`` ``source``...). A malformed event goes out on the stream as an
    ``event: malformed`` message without an ``id:`` (typed listeners never
    see a field of the wrong type, and it does not move a client's resume
    point).

    Args:
        redact: Mask secret-looking keys in ``data`` and ``metadata``
            (``None``: show everything).
        max_event_bytes: Cap on one event's JSON text, at least
            :data:`MIN_EVENT_BYTES`.
        cache_size: Encodings kept (the most recent ``seq`` values), so
            that every client of an event shares one encoding.

    Raises:
        ValueError: ``max_event_bytes`` is too small or ``cache_size`` < 1.
        TypeError: Either is not an ``int``.
    """

    __slots__ = ("_cache", "_cache_size", "_lock", "max_event_bytes", "placeholders", "redact")

    def __init__(
        self,
        *,
        redact: Redact | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        cache_size: int = 4096,
    ) -> None:
        for name, value, least in (
            ("max_event_bytes", max_event_bytes, MIN_EVENT_BYTES),
            ("cache_size", cache_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
            if value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        self.redact = redact
        self.max_event_bytes = max_event_bytes
        self.placeholders = 0
        """Placeholders written so far (values that JSON could not carry)."""
        self._cache_size = cache_size
        # seq -> Frame; events of one bus share it, so N clients cost one encoding.
        self._cache: dict[int, Frame] = {}
        self._lock = threading.Lock()

    def to_dict(self, event: Event[Any]) -> dict[str, Any]:
        """The event as a JSON-ready dict (payload converted, not size-capped)."""
        conv = _Converter(self.redact, self.max_event_bytes, self.max_event_bytes)
        out, broken = self._envelope(event, conv)
        for key in ("metadata", "data"):
            try:
                out[key] = conv.convert(getattr(event, key))
            except Exception as exc:  # e.g. a mapping whose items() raises
                out[key] = conv.placeholder("conversion failed", event, error=type(exc).__name__)
        if conv.cut:
            out["truncated"] = True
        if conv.placeholders:
            out["placeholders"] = conv.placeholders
        if broken:
            out["malformed"] = broken
        with self._lock:
            self.placeholders += conv.placeholders
        return out

    @staticmethod
    def _envelope(event: Event[Any], conv: _Converter) -> tuple[dict[str, Any], list[str]]:
        """The event's own fields, each checked against the Event contract."""
        broken: list[str] = []
        out: dict[str, Any] = {"seq": event.seq}
        for name in ("id", "type", "timestamp", "source", "scope"):
            out[name] = None
        for name in _ENVELOPE_STR:
            value = getattr(event, name, None)
            if value is not None and type(value) is not str:
                broken.append(name)
                value = conv.placeholder("not a str", value, value=conv.convert(value))
            out[name] = value
        try:
            out["type"] = event.type_name
        except Exception:
            broken.append("type")
            out["type"] = conv.placeholder("bad event type", event.type)
        stamp: Any = event.timestamp
        if type(stamp) is not float and type(stamp) is not int:
            broken.append("timestamp")
            stamp = conv.placeholder("not a number", stamp, value=conv.convert(stamp))
        elif not math.isfinite(stamp):
            broken.append("timestamp")
            stamp = conv.convert(stamp)  # a non-finite float's placeholder
        out["timestamp"] = stamp
        scope = event.scope
        if not isinstance(scope, tuple) or not all(type(p) is str for p in scope):
            broken.append("scope")
            out["scope"] = [p if type(p) is str else conv.convert(p) for p in _as_list(scope)]
        else:
            out["scope"] = list(scope)
        return out, broken

    def to_json(self, event: Event[Any]) -> str:
        """The event's JSON text, at most ``max_event_bytes`` bytes (ASCII)."""
        return self.frame(event).text

    def frame(self, event: Event[Any]) -> Frame:
        """The event's encodings (cached by ``seq``)."""
        cached = self._cache.get(event.seq)
        if cached is not None and cached.event_id is event.id:
            return cached
        return self._encode(event)

    def _encode(self, event: Event[Any]) -> Frame:
        try:
            obj = self.to_dict(event)
            text = self._capped(obj)
        except Exception as exc:  # last resort; the steps above do not raise
            obj = {"seq": event.seq, "malformed": ["event"], "data": None}
            obj["data"] = _placeholder("encoding failed", event, error=type(exc).__name__)
            text = _dumps(obj)
        malformed = "malformed" in obj
        if malformed:
            sse = f"event: malformed\ndata: {text}\n\n".encode()
        else:
            sse = f"id: {event.seq}\nevent: {_clean_line(obj['type'])}\ndata: {text}\n\n".encode()
        frame = Frame(event.seq, event.id, text, sse, malformed)
        cache = self._cache
        cache[event.seq] = frame
        if len(cache) > self._cache_size:
            # another thread may have evicted it first
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del cache[next(iter(cache))]
        return frame

    def _capped(self, obj: dict[str, Any]) -> str:
        cap = self.max_event_bytes
        text = _dumps(obj)
        if len(text) <= cap:
            return text
        obj["truncated"] = True
        for key in ("data", "metadata"):
            text = self._shrink(obj, key, cap)
            if len(text) <= cap:
                return text
        # Only pathological envelopes (huge ids or sources) get here.
        minimal = {
            "seq": obj["seq"],
            "id": str(obj["id"])[:200],
            "type": str(obj["type"])[:200],
            "timestamp": obj["timestamp"],
            "scope": [],
            "metadata": {},
            "data": {"$truncated": True, "bytes_at_least": len(text), "preview": ""},
            "truncated": True,
        }
        if "malformed" in obj:
            minimal["malformed"] = obj["malformed"]
        return _dumps(minimal)

    @staticmethod
    def _shrink(obj: dict[str, Any], key: str, cap: int) -> str:
        """Replace ``obj[key]`` by a truncation marker with as long a preview as fits."""
        original = _dumps(obj[key])
        if len(original) <= 64:
            return _dumps(obj)
        marker: dict[str, Any] = {
            "$truncated": True,
            "bytes_at_least": len(original),
            "preview": "",
        }
        obj[key] = marker
        room = cap - len(_dumps(obj)) - 16
        if room <= 0:
            return _dumps(obj)
        # The preview is ASCII JSON text: escaping it at most doubles it.
        marker["preview"] = original[: room // 2]
        text = _dumps(obj)
        while len(text) > cap and marker["preview"]:
            marker["preview"] = marker["preview"][: len(marker["preview"]) // 2]
            text = _dumps(obj)
        return text


def _as_list(value: Any) -> list[Any]:
    try:
        return list(value)
    except Exception:
        return [value]

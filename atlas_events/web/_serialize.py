"""JSON for the browser: events and arbitrary payloads, safely and within a size cap.

Payloads are whatever the publisher passed, so the converter accepts
anything and never raises: attrs and dataclass instances become objects
(with a ``"$type"`` key naming the class), enums become ``"Enum.MEMBER"``,
datetimes ISO 8601 strings, bytes ``{"$bytes": <base64>}``, non-finite
floats strings, and unknown objects their ``repr``. Nothing is pickled and
no HTML is produced: the page inserts the text it receives as text.

The work is bounded: a payload with more nodes than the size cap allows is
cut while it is converted (a huge payload costs no more than a big one),
and an event whose JSON is still over the cap has its ``data`` (then its
``metadata``) replaced by a marker ``{"$truncated": true, "bytes_at_least":
N, "preview": "<the start of its JSON>"}`` (``N`` is a lower bound: very
large values were already shortened while converting).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import json
import math
import os
import uuid
from collections.abc import Mapping
from typing import Any, Final

import attrs

from .._event import Event
from ..middleware import Redact

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "MIN_EVENT_BYTES",
    "EventEncoder",
    "to_jsonable",
]

DEFAULT_MAX_EVENT_BYTES: Final = 64 * 1024
"""Default cap on one event's JSON, in bytes."""

MIN_EVENT_BYTES: Final = 1024
"""The smallest accepted cap: room for the envelope and a short preview."""

_MAX_DEPTH: Final = 32
_MEMO_SIZE: Final = 4096
_CUT: Final = "\u2026"  # what stands in for values past the node budget
_dumps = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), check_circular=False
).encode


def _enum_name(value: enum.Enum) -> str:
    return f"{type(value).__name__}.{value.name}"


def _safe_repr(value: object, limit: int) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the dashboard
        text = f"<{type(value).__qualname__} object (repr failed: {type(exc).__name__})>"
    if len(text) > limit:
        text = f"{text[:limit]}{_CUT}[{len(text) - limit} more chars]"
    return text


class _Converter:
    """One conversion: a node budget, the redaction rule, the cycle guard."""

    __slots__ = ("budget", "cut", "mask", "max_str", "memo", "redact", "stack")

    def __init__(
        self,
        redact: Redact | None,
        budget: int,
        max_str: int,
        memo: dict[str, bool] | None = None,
    ) -> None:
        self.redact = redact
        self.mask = redact.mask if redact is not None else ""
        self.budget = budget
        self.max_str = max_str
        self.cut = False
        self.stack: set[int] = set()
        # key -> redacted?  Payload keys repeat from event to event, and
        # Redact.matches splits the key into words each time.
        self.memo: dict[str, bool] = {} if memo is None else memo

    def key(self, key: object) -> str:
        if isinstance(key, str):
            return key
        if isinstance(key, enum.Enum):
            return _enum_name(key)
        if key is None or isinstance(key, bool | int | float):
            return _dumps(key) if not isinstance(key, float) or math.isfinite(key) else str(key)
        return _safe_repr(key, 200)

    def hidden(self, key: str) -> bool:
        if self.redact is None:
            return False
        hit = self.memo.get(key)
        if hit is None:
            memo = self.memo
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            hit = memo[key] = self.redact.matches(key)
        return hit

    def convert(self, value: Any, depth: int = 0) -> Any:
        self.budget -= 1
        if self.budget < 0:
            self.cut = True
            return _CUT
        # Fast paths for the exact JSON types, the bulk of real payloads.
        t = type(value)
        if t is str:
            if len(value) <= self.max_str:
                return value
        elif t is int or value is None or t is bool:
            return value
        elif t is float:
            return value if math.isfinite(value) else str(value)
        elif t is dict and depth < _MAX_DEPTH and id(value) not in self.stack:
            self.stack.add(id(value))
            try:
                return self._fields(value.items(), depth + 1)
            finally:
                self.stack.discard(id(value))
        if isinstance(value, enum.Enum):
            return _enum_name(value)
        if isinstance(value, str):
            if len(value) > self.max_str:
                self.cut = True
                return f"{value[: self.max_str]}{_CUT}[{len(value) - self.max_str} more chars]"
            return str(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else str(value)
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            out: dict[str, Any] = {"$bytes": base64.b64encode(raw[: self.max_str]).decode()}
            if len(raw) > self.max_str:
                self.cut = True
                out["length"] = len(raw)
            return out
        if isinstance(value, datetime.date | datetime.time):
            return value.isoformat()
        if isinstance(value, datetime.timedelta):
            return value.total_seconds()
        if isinstance(value, uuid.UUID | decimal.Decimal):
            return str(value)
        if isinstance(value, os.PathLike):
            path = os.fspath(value)
            return path if isinstance(path, str) else self.convert(path, depth)
        if depth >= _MAX_DEPTH:
            self.cut = True
            return _safe_repr(value, 200)
        ident = id(value)
        if ident in self.stack:
            return "<cycle>"
        self.stack.add(ident)
        try:
            return self._container(value, depth + 1)
        finally:
            self.stack.discard(ident)

    def _container(self, value: Any, depth: int) -> Any:
        if isinstance(value, Mapping):
            return self._fields(value.items(), depth)
        cls = type(value)
        if attrs.has(cls):
            fields = ((f.name, getattr(value, f.name, None)) for f in attrs.fields(cls))
            return self._fields(fields, depth, type_name=cls.__qualname__)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = ((f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value))
            return self._fields(fields, depth, type_name=cls.__qualname__)
        if isinstance(value, list | tuple | set | frozenset):
            out: list[Any] = []
            for item in value:
                if self.budget <= 0:
                    self.cut = True
                    out.append(_CUT)
                    break
                out.append(self.convert(item, depth))
            return out
        return _safe_repr(value, self.max_str)

    def _fields(self, items: Any, depth: int, *, type_name: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {} if type_name is None else {"$type": type_name}
        hidden = self.hidden
        convert = self.convert
        for key, item in items:
            if self.budget <= 0:
                self.cut = True
                out[_CUT] = _CUT
                break
            name = key if type(key) is str else self.key(key)
            out[name] = self.mask if hidden(name) else convert(item, depth)
        return out


def to_jsonable(
    value: Any,
    *,
    redact: Redact | None = None,
    max_nodes: int = 100_000,
    max_str: int = DEFAULT_MAX_EVENT_BYTES,
) -> Any:
    """Convert ``value`` into plain JSON types (dict, list, str, int, float, bool, None).

    Never raises. See the module docstring for the conversions.

    Args:
        value: Any object.
        redact: Mask the values of matching keys (mapping keys and
            attrs/dataclass field names) with ``redact.mask``.
        max_nodes: Stop converting after this many values; the rest is
            replaced by ``"\u2026"``.
        max_str: Longer strings (and bytes, and reprs) are cut to this length.

    Returns:
        A value :func:`json.dumps` accepts with ``allow_nan=False``.
    """
    return _Converter(redact, max_nodes, max_str).convert(value)


class EventEncoder:
    """Turns events into JSON objects for the dashboard, within a byte cap.

    The JSON object of an event has the keys ``seq``, ``id``, ``type``
    (``"Enum.MEMBER"``), ``timestamp``, ``source``, ``scope`` (a list),
    ``correlation_id``, ``parent_id``, ``origin``, ``metadata`` and ``data``,
    plus ``"truncated": true`` when the cap forced a cut.

    Args:
        redact: Mask secret-looking keys in ``data`` and ``metadata``
            (``None``: show everything).
        max_event_bytes: Cap on one event's JSON text, at least
            :data:`MIN_EVENT_BYTES`.
        cache_size: Encodings kept (the most recent ``seq`` values), so
            that every client of an event shares one encoding.

    Raises:
        ValueError: ``max_event_bytes`` is too small.
    """

    __slots__ = ("_cache", "_cache_size", "_memo", "max_event_bytes", "redact")

    def __init__(
        self,
        *,
        redact: Redact | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        cache_size: int = 4096,
    ) -> None:
        if (
            isinstance(max_event_bytes, bool)
            or not isinstance(max_event_bytes, int)
            or max_event_bytes < MIN_EVENT_BYTES
        ):
            raise ValueError(
                f"max_event_bytes must be an int >= {MIN_EVENT_BYTES}, got {max_event_bytes!r}"
            )
        self.redact = redact
        self.max_event_bytes = max_event_bytes
        self._cache_size = cache_size
        # seq -> (event id, JSON text, SSE frame); events of one bus share it,
        # so N clients of one event cost one encoding.
        self._cache: dict[int, tuple[str, str, bytes]] = {}
        self._memo: dict[str, bool] = {}

    def to_dict(self, event: Event[Any]) -> dict[str, Any]:
        """The event as a JSON-ready dict (payload converted, not size-capped)."""
        conv = _Converter(self.redact, self.max_event_bytes, self.max_event_bytes, self._memo)
        out = self._envelope(event)
        out["metadata"] = conv.convert(event.metadata)
        out["data"] = conv.convert(event.data)
        if conv.cut:
            out["truncated"] = True
        return out

    @staticmethod
    def _envelope(event: Event[Any]) -> dict[str, Any]:
        return {
            "seq": event.seq,
            "id": event.id,
            "type": event.type_name,
            "timestamp": event.timestamp,
            "source": event.source,
            "scope": list(event.scope),
            "correlation_id": event.correlation_id,
            "parent_id": event.parent_id,
            "origin": event.origin,
        }

    def to_json(self, event: Event[Any]) -> str:
        """The event's JSON text, at most ``max_event_bytes`` bytes (ASCII)."""
        cached = self._cache.get(event.seq)
        if cached is not None and cached[0] == event.id:
            return cached[1]
        return self._encode(event)[1]

    def frame(self, event: Event[Any]) -> bytes:
        """The event as one Server-Sent Events message (``id``, ``event``, ``data``)."""
        cached = self._cache.get(event.seq)
        if cached is None or cached[0] != event.id:
            cached = self._encode(event)
        return cached[2]

    def _encode(self, event: Event[Any]) -> tuple[str, str, bytes]:
        try:
            text = self._capped(self.to_dict(event))
        except Exception as exc:  # pragma: no cover - the converter does not raise
            text = self._capped(
                {**self._envelope(event), "data": _safe_repr(exc, 200), "truncated": True}
            )
        name = event.type_name.replace("\r", "").replace("\n", "")
        frame = f"id: {event.seq}\nevent: {name}\ndata: {text}\n\n".encode()
        entry = (event.id, text, frame)
        cache = self._cache
        cache[event.seq] = entry
        if len(cache) > self._cache_size:
            del cache[next(iter(cache))]
        return entry

    def _capped(self, obj: dict[str, Any]) -> str:
        cap = self.max_event_bytes
        text = _dumps(obj)
        if len(text) <= cap:
            return text
        obj["truncated"] = True
        for key in ("data", "metadata"):
            original = _dumps(obj[key])
            if len(original) <= 64:
                continue
            marker: dict[str, Any] = {
                "$truncated": True,
                "bytes_at_least": len(original),
                "preview": "",
            }
            obj[key] = marker
            room = cap - len(_dumps(obj)) - 16
            if room > 0:
                # The preview is ASCII JSON text: escaping it at most doubles it.
                marker["preview"] = original[: room // 2]
                text = _dumps(obj)
                while len(text) > cap and marker["preview"]:
                    marker["preview"] = marker["preview"][: len(marker["preview"]) // 2]
                    text = _dumps(obj)
            else:
                text = _dumps(obj)
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
        return _dumps(minimal)

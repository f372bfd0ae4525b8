"""Middleware: functions that transform or drop events before they are recorded.

A middleware is any ``Callable[[Event], Event | None]``. The bus runs its
middlewares in the order they were added; each receives what the previous
returned. Returning ``None`` drops the event (it is counted, not recorded,
not delivered). Derive a changed event with :func:`attrs.evolve` -- events
are immutable.

This module ships a few ready-made ones, written as small ``__slots__``
classes that do their set-up once in ``__init__``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import attrs

from ._event import Event

__all__ = [
    "DEFAULT_REDACTED_KEYS",
    "DropTypes",
    "Middleware",
    "Redact",
    "SetMetadata",
]

Middleware: TypeAlias = Callable[[Event[Any]], "Event[Any] | None"]
"""The middleware signature (like structlog's ``Processor``)."""

DEFAULT_REDACTED_KEYS: Final = frozenset(
    {"password", "passwd", "token", "secret", "authorization", "api_key", "apikey", "cookie"}
)
_MASK: Final = "***"
_WORDS: Final = re.compile(r"[^a-z0-9]+")


class Redact:
    """Mask values whose key looks secret, in ``data`` and ``metadata``.

    Walks dicts, lists and tuples in the payload (other objects are left as
    they are) and returns a copy with every value under a matching key
    replaced by ``"***"``. Keys match case-insensitively, as a whole
    (``"API_KEY"`` matches ``"api_key"``) or by one of their ``-``/``_``/``.``
    separated words (``"x-auth-token"`` matches ``"token"``, ``"tokens"``
    does not). Events with nothing to redact pass through unchanged (no
    copy).

    Args:
        keys: Names to redact (default :data:`DEFAULT_REDACTED_KEYS`).
        mask: The replacement value.
    """

    __slots__ = ("keys", "mask")

    inherit = True
    """A redaction policy covers a bus's scopes too (see :meth:`EventBus.add_middleware`)."""

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACTED_KEYS, mask: str = _MASK) -> None:
        self.keys = frozenset(k.lower() for k in keys)
        if not self.keys:
            raise ValueError("Redact needs at least one key")
        self.mask = mask

    def matches(self, key: str) -> bool:
        """Whether values under ``key`` are redacted."""
        low = key.lower()
        return low in self.keys or any(part in self.keys for part in _WORDS.split(low))

    def _scrub(self, value: Any) -> tuple[Any, bool]:
        if isinstance(value, Mapping):
            changed = False
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str) and self.matches(k):
                    out[k] = self.mask
                    changed = True
                else:
                    out[k], c = self._scrub(v)
                    changed = changed or c
            return (out if changed else value), changed
        if isinstance(value, list | tuple):
            items = [self._scrub(v) for v in value]
            if any(c for _, c in items):
                seq = [v for v, _ in items]
                return (seq if isinstance(value, list) else tuple(seq)), True
        return value, False

    def __call__(self, event: Event[Any]) -> Event[Any]:
        data, d_changed = self._scrub(event.data)
        meta, m_changed = self._scrub(event.metadata)
        if not (d_changed or m_changed):
            return event
        return attrs.evolve(
            event, data=data, metadata=MappingProxyType(dict(meta)) if m_changed else event.metadata
        )

    def __repr__(self) -> str:
        return f"Redact(keys={sorted(self.keys)!r})"


class SetMetadata:
    """Add fixed or computed entries to every event's metadata.

    Args:
        values: Entries to add; a callable value is called with the event
            and its result stored (e.g. ``{"host": socket.gethostname}`` is
            fixed, ``{"received_at": lambda e: time.time()}`` is computed).
        overwrite: Replace keys the event already has (default ``False``).
    """

    __slots__ = ("_computed", "_fixed", "overwrite")

    def __init__(self, values: Mapping[str, Any], *, overwrite: bool = False) -> None:
        self._fixed = {k: v for k, v in values.items() if not callable(v)}
        self._computed = {k: v for k, v in values.items() if callable(v)}
        self.overwrite = overwrite

    def __call__(self, event: Event[Any]) -> Event[Any]:
        meta = dict(event.metadata)
        for k, v in self._fixed.items():
            if self.overwrite or k not in meta:
                meta[k] = v
        for k, fn in self._computed.items():
            if self.overwrite or k not in meta:
                meta[k] = fn(event)
        return attrs.evolve(event, metadata=MappingProxyType(meta))

    def __repr__(self) -> str:
        return f"SetMetadata({sorted({**self._fixed, **self._computed})!r})"


class DropTypes:
    """Drop events of the given types (e.g. noisy debug events in production)."""

    __slots__ = ("_ids", "types")

    def __init__(self, *types: enum.Enum) -> None:
        self.types = tuple(types)
        # By identity: IntEnum / StrEnum members of other enums may be equal.
        self._ids = frozenset(map(id, self.types))

    def __call__(self, event: Event[Any]) -> Event[Any] | None:
        return None if id(event.type) in self._ids else event

    def __repr__(self) -> str:
        return f"DropTypes({', '.join(map(repr, self.types))})"

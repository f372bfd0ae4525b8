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
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import attrs

from ._checks import check_bool, check_event_type
from ._event import Event
from ._redact import DEFAULT_REDACTED_KEYS, KeyMatcher, scrub
from .exceptions import InvalidEventTypeError, InvalidOptionError

__all__ = [
    "DEFAULT_REDACTED_KEYS",
    "DropTypes",
    "Middleware",
    "Redact",
    "SetMetadata",
]

Middleware: TypeAlias = Callable[[Event[Any]], "Event[Any] | None"]
"""The middleware signature (like structlog's ``Processor``)."""

_MASK: Final = "***"


class Redact:
    """Mask values whose key looks secret, in ``data`` and ``metadata``.

    Walks every structured payload kind -- mappings, lists/tuples/sets,
    ``NamedTuple``, dataclasses, attrs classes, ``msgspec.Struct`` and pydantic
    models -- and returns a copy of the event with every value under a
    matching key (or field name) replaced by ``mask``. Each rebuilt payload
    keeps its type, so a handler subscribed with a typed key still gets its
    class. Keys match as normalized words: ``"X-Api-Key"``, ``"apiKey"`` and
    ``"API_KEY"`` all match ``"api_key"``; ``"AWS_SECRET_ACCESS_KEY"`` matches
    ``"secret"``; ``"tokens"`` does not match ``"token"``. Events with nothing
    to redact pass through unchanged (no copy).

    Args:
        keys: Names to redact (default :data:`DEFAULT_REDACTED_KEYS`).
        mask: The replacement value.

    Raises:
        TypeError: ``keys`` is a single ``str`` or holds a non-``str``.
        ValueError: ``keys`` is empty.
    """

    __slots__ = ("_matcher", "keys", "mask")

    inherit = True
    """A redaction policy covers a bus's scopes too (see :meth:`EventBus.add_middleware`)."""

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACTED_KEYS, mask: str = _MASK) -> None:
        self._matcher = KeyMatcher(keys)
        self.keys = frozenset(k.lower() for k in keys)
        self.mask = mask

    def matches(self, key: str) -> bool:
        """Whether values under ``key`` are redacted."""
        return self._matcher(key)

    def scrub(self, value: Any) -> tuple[Any, bool]:
        """``(value with secrets masked, whether anything was masked)``; see :func:`__call__`."""
        return scrub(value, self._matcher, self.mask)

    def __call__(self, event: Event[Any]) -> Event[Any]:
        data, d_changed = self.scrub(event.data)
        meta, m_changed = self.scrub(event.metadata)
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

    Raises:
        InvalidOptionError: ``values`` is not a mapping with ``str`` keys, or
            ``overwrite`` is not a bool.
    """

    __slots__ = ("_computed", "_fixed", "overwrite")

    def __init__(self, values: Mapping[str, Any], *, overwrite: bool = False) -> None:
        if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
            raise InvalidOptionError("values", values, "a mapping with str keys")
        check_bool("overwrite", overwrite)
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
    """Drop events of the given types (e.g. noisy debug events in production).

    Args:
        types: The enum members to drop, as separate arguments
            (``DropTypes(*noisy)`` for a collection).

    Raises:
        InvalidEventTypeError: A type is not an enum member, or is ``ANY``.
    """

    __slots__ = ("_ids", "types")

    def __init__(self, *types: enum.Enum) -> None:
        for t in types:
            if isinstance(t, list | set | frozenset | tuple):
                raise InvalidEventTypeError(
                    t, allow_any=False, hint="pass members as DropTypes(*types)"
                )
            check_event_type(t, allow_any=False)
        self.types = tuple(types)
        # By identity: IntEnum / StrEnum members of other enums may be equal.
        self._ids = frozenset(map(id, self.types))

    def __call__(self, event: Event[Any]) -> Event[Any] | None:
        return None if id(event.type) in self._ids else event

    def __repr__(self) -> str:
        return f"DropTypes({', '.join(map(repr, self.types))})"

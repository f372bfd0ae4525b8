"""Checks of what a publisher hands in: publish's metadata and source, prebuilt events."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._event import ANY, EMPTY_METADATA, Event
from .exceptions import InvalidEventTypeError

__all__ = ["check_event", "checked_metadata"]


def checked_metadata(source: object, metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Check ``publish``'s ``source``; return ``metadata`` as a read-only copy.

    Raises:
        TypeError: ``source`` is not a str or ``None``, or ``metadata`` is not
            a mapping.
    """
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be a str or None, got {type(source).__name__}")
    if metadata is None:
        return EMPTY_METADATA
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return MappingProxyType(dict(metadata)) if metadata else EMPTY_METADATA


def _opt_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"event.{name} must be a str or None, got {type(value).__name__}")


def check_event(event: object) -> None:
    """Check a prebuilt event before anything is recorded.

    An :class:`Event` built by ``Event.create`` or ``attrs.evolve`` passes;
    one forged with ``object.__setattr__`` or built from bad fields does
    not.

    Raises:
        TypeError: ``event`` is not an :class:`Event`, or a field has the
            wrong type (the message names the field).
        InvalidEventTypeError: ``event.type`` is not an enum member (or is ``ANY``).
        ValueError: ``event.timestamp`` is not finite, or ``event.id`` is empty.
    """
    if not isinstance(event, Event):
        raise TypeError(f"publish_event() takes an Event, got {type(event).__name__}")
    if not isinstance(event.type, enum.Enum) or event.type is ANY:
        raise InvalidEventTypeError(event.type, allow_any=False)
    if not isinstance(event.id, str) or not event.id:
        raise ValueError(f"event.id must be a non-empty str, got {event.id!r}")
    ts = event.timestamp
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise TypeError(f"event.timestamp must be a number (epoch seconds), got {ts!r}")
    if not math.isfinite(ts):
        raise ValueError(f"event.timestamp must be finite, got {ts!r}")
    for name in ("source", "parent_id", "correlation_id", "origin"):
        _opt_str(name, getattr(event, name))
    if not isinstance(event.metadata, Mapping):
        raise TypeError(f"event.metadata must be a mapping, got {type(event.metadata).__name__}")
    scope = event.scope
    if not isinstance(scope, tuple) or not all(isinstance(p, str) for p in scope):
        raise TypeError(f"event.scope must be a tuple of str, got {scope!r}")
    if isinstance(event.seq, bool) or not isinstance(event.seq, int):
        raise TypeError(f"event.seq must be an int, got {event.seq!r}")

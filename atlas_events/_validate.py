"""Checks of what a publisher hands in: publish's metadata and source, prebuilt events."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._event import ANY, EMPTY_METADATA, Event, _check_fields
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


def check_event(event: object) -> None:
    """Check a prebuilt event before anything is recorded.

    An :class:`Event` built by ``Event.create`` or ``attrs.evolve`` passes;
    one forged with ``object.__setattr__`` or built from bad fields does
    not. The field rules are the event's own (``_event._check_fields``).

    Raises:
        TypeError, ValueError: ``event`` is not an :class:`Event`, or a
            field has the wrong type or value (the message names it).
        InvalidEventTypeError: ``event.type`` is not an enum member (or is ``ANY``).
    """
    if not isinstance(event, Event):
        raise TypeError(f"publish_event() takes an Event, got {type(event).__name__}")
    if not isinstance(event.type, enum.Enum) or event.type is ANY:
        raise InvalidEventTypeError(event.type, allow_any=False)
    _check_fields(event)
    if not isinstance(event.scope, tuple):
        raise TypeError(f"event.scope must be a tuple of str, got {event.scope!r}")

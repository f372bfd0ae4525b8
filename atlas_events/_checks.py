"""Argument checks shared by every public constructor and method (one helper per check)."""

from __future__ import annotations

import enum
import math
import sys
import threading
from typing import Any

from ._event import ANY, EventKey
from .exceptions import InvalidEventTypeError, InvalidOptionError

__all__ = [
    "at_least",
    "check_bool",
    "check_event_type",
    "check_int",
    "check_seconds",
    "check_str",
    "type_label",
]


# The longest wait the threading and asyncio primitives accept without an
# OverflowError (threading.TIMEOUT_MAX, ~292 years on Linux).
_MAX_SECONDS = threading.TIMEOUT_MAX


def check_int(name: str, value: object, minimum: int = 0, maximum: int | None = sys.maxsize) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]`` (``bool`` is not an int).

    The default ``maximum`` is what a ``deque``'s ``maxlen`` accepts: a
    larger bound would raise ``OverflowError`` later, at first use. Pass
    ``maximum=None`` for values only compared (a query's ``limit``).

    Raises:
        InvalidOptionError: ``value`` is not an int (or is a bool), or is
            out of range (a ``TypeError`` and a ``ValueError``).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f"an int >= {minimum}" + ("" if maximum is None else " and <= sys.maxsize")
        raise InvalidOptionError(name, value, bound)
    return value


def check_seconds(name: str, value: object, *, allow_none: bool = False) -> float | None:
    """Return ``value`` if it is a finite number of seconds ``> 0`` (or ``None`` if allowed).

    Raises:
        InvalidOptionError: ``value`` is not an int or float (a bool is
            neither), not finite, not ``> 0`` or beyond ``threading.TIMEOUT_MAX``.
    """
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        # The range before isfinite: isfinite raises OverflowError on an int beyond a float.
        or not 0 < value <= _MAX_SECONDS
        or not math.isfinite(value)
    ):
        raise InvalidOptionError(
            name, value, f"a finite number of seconds > 0 and <= {_MAX_SECONDS:g}"
        )
    return float(value)


def check_bool(name: str, value: object, *, allow_none: bool = False) -> bool | None:
    """Return ``value`` if it is a bool (or ``None`` if allowed); else raise ``TypeError``."""
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        raise InvalidOptionError(name, value, "a bool")
    return value


def check_str(name: str, value: object, *, allow_none: bool = False) -> str | None:
    """Return ``value`` if it is a str (or ``None`` if allowed); else raise ``TypeError``."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def check_event_type(value: object, *, allow_any: bool) -> enum.Enum:
    """Return the enum member named by ``value`` (a member or an :class:`EventKey`).

    Raises:
        InvalidEventTypeError: ``value`` is not an enum member (or is ``ANY``
            where ``ANY`` is not allowed).
    """
    if isinstance(value, EventKey):
        value = value.type
    if not isinstance(value, enum.Enum) or (value is ANY and not allow_any):
        raise InvalidEventTypeError(value, allow_any=allow_any)
    return value


def type_label(member: enum.Enum) -> str:
    """``"Enum.MEMBER"`` (or ``"ANY"``): how events types are named in names and stats."""
    return "ANY" if member is ANY else f"{type(member).__name__}.{member.name}"


def at_least(minimum: int, maximum: int | None = sys.maxsize) -> Any:
    """An attrs validator: the field is an int in ``[minimum, maximum]`` (see :func:`check_int`)."""

    def validate(_inst: object, attribute: Any, value: object) -> None:
        check_int(attribute.name, value, minimum, maximum)

    return validate

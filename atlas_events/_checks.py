"""Checks of numeric options: the errors name the option and what was wrong."""

from __future__ import annotations

import math
import threading
from typing import Any

__all__ = ["at_least", "check_int", "check_seconds"]

# The longest wait threading and asyncio accept without an OverflowError
# (threading.TIMEOUT_MAX, ~292 years on Linux).
_MAX_SECONDS = threading.TIMEOUT_MAX


def check_int(name: str, value: object, minimum: int = 0) -> int:
    """Return ``value`` if it is an ``int >= minimum`` (a ``bool`` is not an int).

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: object, *, allow_none: bool = False) -> float | None:
    """Return ``value`` if it is a finite number of seconds ``> 0`` (or ``None`` if allowed).

    Raises:
        TypeError: ``value`` is not an int or float (a bool is neither).
        ValueError: ``value`` is not finite (NaN included), not ``> 0`` or
            beyond ``threading.TIMEOUT_MAX``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    # The range first: math.isfinite raises OverflowError on an int beyond a float.
    if not (0 < value <= _MAX_SECONDS and math.isfinite(value)):
        raise ValueError(
            f"{name} must be a finite number of seconds > 0 and <= {_MAX_SECONDS:g}, got {value!r}"
        )
    return float(value)


def at_least(minimum: int) -> Any:
    """An attrs validator: the field is an ``int >= minimum`` (see :func:`check_int`)."""

    def validate(_inst: object, attribute: Any, value: object) -> None:
        check_int(attribute.name, value, minimum)

    return validate

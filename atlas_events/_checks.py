"""Checks of numeric options: the errors name the option and what was wrong."""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["check_count", "check_seconds", "count_at_least", "seconds"]


def check_count(name: str, value: object, minimum: int) -> None:
    """Require an ``int`` (not a ``bool``) ``>= minimum``.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_seconds(name: str, value: object) -> None:
    """Require a finite number of seconds ``> 0``.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is not finite, or not positive (NaN included).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def count_at_least(minimum: int, *, optional: bool = False) -> Any:
    """An attrs validator running :func:`check_count` (``None`` allowed if ``optional``)."""

    def validate(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check_count(attr.name, value, minimum)

    return validate


def seconds(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator running :func:`check_seconds`."""
    check_seconds(attr.name, value)

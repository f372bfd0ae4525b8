"""The validated options of an :class:`EventBus` (one attrs class, one validator per option)."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._checks import at_least
from ._event import ANY
from ._scoped import Nested
from .exceptions import InvalidEventTypeError, InvalidOptionError

__all__ = ["BusOptions"]


def _terminal(_inst: object, _attr: object, value: tuple[Any, ...]) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"terminal_types must be a tuple of enum members, got {value!r}")
    for t in value:
        if not isinstance(t, enum.Enum) or t is ANY:
            raise InvalidEventTypeError(t, allow_any=False)


def _is(kind: type) -> Any:
    def validate(_inst: object, attribute: Any, value: object) -> None:
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise InvalidOptionError(attribute.name, value, f"a {kind.__name__}")

    return validate


def _nested(_inst: object, _attr: object, value: object) -> None:
    if value not in ("queued", "immediate"):
        raise InvalidOptionError("nested", value, "'queued' or 'immediate'")


@attrs.frozen
class BusOptions:
    """What :class:`EventBus` was asked for, checked when given.

    Raises:
        TypeError, ValueError: An option has the wrong type or range; the
            message names the option.
    """

    history_limit: int = attrs.field(default=1000, validator=at_least(0))
    run_history_limit: int = attrs.field(default=500, validator=at_least(0))
    max_runs: int = attrs.field(default=200, validator=at_least(0))
    max_depth: int = attrs.field(default=64, validator=at_least(1))
    raise_handler_errors: bool = attrs.field(default=False, validator=_is(bool))
    name: str = attrs.field(default="root", validator=_is(str))
    terminal_types: tuple[enum.Enum, ...] = attrs.field(default=(), validator=_terminal)
    nested: Nested = attrs.field(default="queued", validator=_nested)

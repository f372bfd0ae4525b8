"""Query parsing for the dashboard: filters, numbers, and 400 errors naming the valid choices."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from starlette.datastructures import QueryParams

from .._bus import EventBus
from .._event import Event, EventType, MemberMap

__all__ = [
    "FILTER_PARAMS",
    "REPEATABLE_PARAMS",
    "EventQuery",
    "QueryError",
    "check_params",
    "parse_int",
    "type_label",
]

FILTER_PARAMS: Final = ("type", "scope", "correlation_id", "source")
"""The filter parameters shared by ``/events`` and ``/history``."""

_MAX_LISTED: Final = 60


class QueryError(ValueError):
    """A request's query is malformed; the message says what is valid (answered with 400).

    Attributes:
        parameter: The offending parameter (or header).
        valid: The accepted choices, when they can be listed.
    """

    def __init__(self, parameter: str, message: str, valid: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.valid = sorted(valid)

    def body(self) -> dict[str, Any]:
        """The JSON body of the 400 answer."""
        out: dict[str, Any] = {"error": str(self), "status": 400, "parameter": self.parameter}
        if self.valid:
            out["valid"] = self.valid
        return out


def type_label(t: enum.Enum) -> str:
    """An event type as the dashboard names it: ``"Enum.MEMBER"``."""
    return f"{type(t).__name__}.{t.name}"


REPEATABLE_PARAMS: Final = frozenset({"type"})
"""Parameters that may be given more than once (their values add up)."""

# ASCII digits only: int() would also take "5_0", " 5" and non-ASCII digits.
_INTEGER: Final = re.compile(r"-?[0-9]{1,30}")


def check_params(params: QueryParams, allowed: Iterable[str]) -> None:
    """Refuse parameters the endpoint does not know (a typo would otherwise filter nothing),
    and parameters other than :data:`REPEATABLE_PARAMS` given more than once (which of
    the values would count is a guess).

    Raises:
        QueryError: An unknown or repeated parameter name.
    """
    known = set(allowed)
    for name in params:
        if name not in known:
            raise QueryError(
                name, f"unknown query parameter {name!r}; valid: {', '.join(sorted(known))}", known
            )
        if name not in REPEATABLE_PARAMS and len(params.getlist(name)) > 1:
            raise QueryError(
                name,
                f"{name} given {len(params.getlist(name))} times; give it once "
                f"(only {', '.join(sorted(REPEATABLE_PARAMS))} may repeat)",
            )


def parse_int(
    raw: str | None, name: str, *, minimum: int = 0, maximum: int | None = None
) -> int | None:
    """``raw`` as an int within bounds, ``None`` when absent or empty.

    Only ASCII digits with an optional ``-`` count (at most 30 of them): no
    spaces, ``+``, ``_`` or non-ASCII digits, which ``int()`` would accept.

    Raises:
        QueryError: Not an integer, or out of bounds.
    """
    if raw is None or raw == "":
        return None
    if not _INTEGER.fullmatch(raw):
        raise QueryError(name, f"{name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise QueryError(name, f"{name} must be {bound}, got {value}")
    return value


def known_types(bus: EventBus, extra: Iterable[enum.Enum]) -> list[enum.Enum]:
    """The event types a filter may name: core types, declared extras, and those the bus has seen.

    Seen means retained in history or subscribed to (``bus.stats()``).
    """
    found: dict[int, enum.Enum] = {}  # by identity: IntEnum/StrEnum members compare by value
    for t in (*EventType, *extra):
        found[id(t)] = t
    for ev in bus.history():
        found.setdefault(id(ev.type), ev.type)
    return list(found.values())


def _spellings(t: enum.Enum) -> tuple[str, ...]:
    return (type_label(t), t.name, str(t.value))


class _TypeMatch:
    """Does an event type match any of the chosen types? (memoised per type, by identity).

    The bus calls stream filters while it holds its recording lock, so they
    must be quick.
    """

    __slots__ = ("labels", "memo")

    def __init__(self, labels: frozenset[str]) -> None:
        self.labels = labels
        self.memo: MemberMap[bool] = MemberMap()

    def __call__(self, t: enum.Enum) -> bool:
        hit = self.memo.get(t)
        if hit is None:
            hit = self.memo[t] = any(s in self.labels for s in _spellings(t))
        return hit


def _parse_types(
    params: QueryParams, choices: Callable[[], list[enum.Enum]], subscribed: Iterable[str]
) -> _TypeMatch | None:
    names = {n.strip() for v in params.getlist("type") for n in v.split(",") if n.strip()}
    if not names:
        return None
    known = choices()
    spelled = {s for t in known for s in _spellings(t)} | set(subscribed)
    unknown = sorted(names - spelled)
    if unknown:
        labels = sorted({type_label(t) for t in known} | set(subscribed))
        listed = ", ".join(labels[:_MAX_LISTED]) + (" ..." if len(labels) > _MAX_LISTED else "")
        raise QueryError(
            "type",
            f"unknown event type {', '.join(map(repr, unknown))}; give a type as Enum.MEMBER, "
            f"MEMBER or its value; valid: {listed} (a type of your own is known once the bus "
            "has recorded or subscribed to it, or when passed as create_app(event_types=...))",
            labels,
        )
    return _TypeMatch(frozenset(names))


def _parse_scope(raw: str | None) -> tuple[str, ...] | None:
    if raw is None or raw.strip("/ ") == "":
        return None
    parts = tuple(p for p in raw.split("/") if p)
    if any(p != p.strip() or not p for p in parts):
        raise QueryError("scope", f"scope must be a path like agents/planner, got {raw[:80]!r}")
    return parts


class EventQuery:
    """The event filters shared by ``/events`` and ``/history`` (combined with *and*).

    Args:
        params: The request's query.
        bus: The bus, whose known types a ``type`` filter is checked against.
        extra_types: More types the app was told about.

    Raises:
        QueryError: An unknown type or a malformed scope.
    """

    __slots__ = ("correlation_id", "scope", "source", "types")

    def __init__(
        self, params: QueryParams, bus: EventBus, extra_types: Iterable[enum.Enum] = ()
    ) -> None:
        subscribed = (
            [t for t in bus.stats()["subscribers"] if t != "ANY"] if "type" in params else []
        )
        self.types = _parse_types(params, lambda: known_types(bus, extra_types), subscribed)
        self.scope = _parse_scope(params.get("scope"))
        self.correlation_id = params.get("correlation_id") or None
        self.source = params.get("source") or None

    def matches(self, ev: Event[Any]) -> bool:
        """Whether ``ev`` passes every filter."""
        if self.types is not None and not self.types(ev.type):
            return False
        scope = self.scope
        if scope is not None and ev.scope[: len(scope)] != scope:
            return False
        if self.correlation_id is not None and ev.correlation_id != self.correlation_id:
            return False
        return self.source is None or ev.source == self.source

    def filter(self) -> Callable[[Event[Any]], bool] | None:
        """A stream filter, or ``None`` when nothing is filtered (the cheap path)."""
        if all(v is None for v in (self.types, self.scope, self.source, self.correlation_id)):
            return None
        return self.matches

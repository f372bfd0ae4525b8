"""The dashboard's options, validated on creation (errors name the option)."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from ..middleware import Redact
from ._serialize import DEFAULT_MAX_EVENT_BYTES, MIN_EVENT_BYTES

__all__ = [
    "DEFAULT_CLIENT_QUEUE",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_SEND_TIMEOUT",
    "DashboardOptions",
    "HealthSource",
]

DEFAULT_HEARTBEAT: Final = 15.0
"""Seconds between heartbeat comments on an idle SSE connection."""

DEFAULT_MAX_CLIENTS: Final = 64
"""Concurrent SSE clients served before new ones get ``503``."""

DEFAULT_CLIENT_QUEUE: Final = 1000
"""Events queued per SSE client before the oldest are dropped."""

DEFAULT_SEND_TIMEOUT: Final = 5.0
"""Seconds one write to an SSE client may wait to drain before the client is dropped."""


@runtime_checkable
class HealthSource(Protocol):
    """Anything with a ``health()`` snapshot, e.g. a ``RedisBridge``."""

    def health(self) -> Mapping[str, Any]: ...


def _integer(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {type(value).__name__}: {value!r}")


def _seconds(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{attribute.name} must be a number of seconds, got {type(value).__name__}: {value!r}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number of seconds, got {value!r}")


def _at_least(least: float) -> Any:
    def check(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value < least:
            raise ValueError(f"{attribute.name} must be >= {least}, got {value!r}")

    return check


def _above_zero(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _token(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"token must be a non-empty str or None, got {value!r}")


def _redactor(redact: Redact | Iterable[str] | bool | None) -> Redact | None:
    if redact is None or redact is False:
        return None
    if redact is True:
        return Redact()
    if isinstance(redact, Redact):
        return redact
    if isinstance(redact, str):
        raise TypeError("redact takes an iterable of key names, not a single str")
    return Redact(redact)


def _hosts(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("allowed_hosts takes an iterable of host names, not a single str")
    hosts = tuple(value)
    for host in hosts:
        if not isinstance(host, str) or not host.strip():
            raise ValueError(f"allowed_hosts entries must be non-empty str, got {host!r}")
    return hosts


def _types(value: Iterable[enum.Enum | type[enum.Enum]]) -> tuple[enum.Enum, ...]:
    out: list[enum.Enum] = []
    for item in value:
        if isinstance(item, type) and issubclass(item, enum.Enum):
            out.extend(item)
        elif isinstance(item, enum.Enum):
            out.append(item)
        else:
            raise TypeError(f"event_types takes Enum classes or members, got {item!r}")
    return tuple(out)


def _sources(value: Mapping[str, HealthSource] | None) -> dict[str, HealthSource]:
    sources = dict(value or {})
    for name, source in sources.items():
        if not isinstance(name, str) or not callable(getattr(source, "health", None)):
            raise TypeError(
                f"health_sources maps names to objects with a health() method, got {name!r}: "
                f"{type(source).__name__}"
            )
    return sources


@attrs.frozen(kw_only=True)
class DashboardOptions:
    """Every option of :func:`~atlas_events.web.create_app`, checked on creation.

    Raises:
        TypeError: An option of the wrong type (the message names it).
        ValueError: An option out of range (the message names it).
    """

    token: str | None = attrs.field(default=None, validator=_token)
    max_clients: int = attrs.field(default=DEFAULT_MAX_CLIENTS, validator=[_integer, _at_least(1)])
    heartbeat: float = attrs.field(default=DEFAULT_HEARTBEAT, validator=[_seconds, _at_least(0)])
    redact: Redact | None = attrs.field(default=Redact(), converter=_redactor)
    max_event_bytes: int = attrs.field(
        default=DEFAULT_MAX_EVENT_BYTES, validator=[_integer, _at_least(MIN_EVENT_BYTES)]
    )
    client_queue: int = attrs.field(
        default=DEFAULT_CLIENT_QUEUE, validator=[_integer, _at_least(1)]
    )
    send_timeout: float = attrs.field(
        default=DEFAULT_SEND_TIMEOUT, validator=[_seconds, _above_zero]
    )
    allowed_hosts: tuple[str, ...] | None = attrs.field(default=None, converter=_hosts)
    event_types: tuple[enum.Enum, ...] = attrs.field(default=(), converter=_types)
    health_sources: dict[str, HealthSource] = attrs.field(factory=dict, converter=_sources)

"""Which local events a bridge sends: the types and scope filters and the publish-time check."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from .. import Event, EventKey
from .._event import MemberMap
from ._health import LOCAL_ONLY_TYPES
from ._outbox import Outbox
from .codec import Codec

__all__ = ["Outbound", "scope_path", "select_types"]


def scope_path(scope: str | tuple[str, ...]) -> tuple[str, ...]:
    """``"agents/planner"`` or ``("agents", "planner")`` as a path tuple.

    Raises:
        ValueError: Neither form.
    """
    if isinstance(scope, str):
        return tuple(part for part in scope.split("/") if part)
    if isinstance(scope, tuple) and all(isinstance(p, str) and p for p in scope):
        return scope
    raise ValueError(f"a scope is a 'a/b' str or a tuple of names, got {scope!r}")


def select_types(
    types: Iterable[enum.Enum | EventKey[Any]] | None, codec: Codec
) -> MemberMap[bool] | None:
    """The chosen event types as a member map, ``None`` for "all the codec knows".

    Raises:
        ValueError: A type has no wire name in ``codec``.
    """
    if types is None:
        return None
    chosen: MemberMap[bool] = MemberMap()
    for t in types:
        member = t.type if isinstance(t, EventKey) else t
        if not isinstance(member, enum.Enum) or not codec.knows(member):
            raise ValueError(f"{member!r} has no wire name: register it with the codec first")
        chosen[member] = True
    return chosen


class Outbound:
    """Decides, at publish time, whether a local event goes out, and encodes it then.

    Args:
        codec: The wire codec.
        types: From :func:`select_types`.
        scopes: Scope path prefixes; ``None`` for all.
        outbox: Where admitted events wait for the sender.
    """

    __slots__ = ("_admit", "_encode", "_scopes", "_types", "_wire", "codec", "outbox")

    def __init__(
        self,
        codec: Codec,
        types: MemberMap[bool] | None,
        scopes: tuple[tuple[str, ...], ...] | None,
        outbox: Outbox,
    ) -> None:
        self.codec = codec
        self._types = types
        self._scopes = None if scopes is None or () in scopes else scopes
        self.outbox = outbox
        self._admit = outbox.admit  # bound once: check() runs on every publish
        self._encode = codec.encode_parts
        # Wire names by member identity (IntEnum/StrEnum members compare by
        # value), and the same names by id(member) for the publish check's
        # lookup without a method call. One pair, replaced as a whole by
        # reset(): every id in the dict has its member held by the map of
        # the same pair, so no id can be reused while it is cached.
        self._wire: tuple[MemberMap[str], dict[int, str]] = (MemberMap(), {})

    def reset(self) -> None:
        """Forget the cached wire names (codec registrations may have changed)."""
        self._wire = (MemberMap(), {})

    def wire_name(self, event_type: enum.Enum) -> str:
        """The wire name of ``event_type`` if its events go out, else ``""`` (cached)."""
        names, ids = self._wire
        name = names.get(event_type)
        if name is None:
            types = self._types
            if types is None:
                local_only = any(event_type is t for t in LOCAL_ONLY_TYPES)  # identity, not value
                wanted = not local_only and self.codec.knows(event_type)
            else:
                wanted = event_type in types
            name = self.codec.type_name(event_type) if wanted else ""
            names[event_type] = name  # first: it holds the member whose id is cached next
            ids[id(event_type)] = name
        return name

    def in_scope(self, path: tuple[str, ...]) -> bool:
        scopes = self._scopes
        return scopes is None or any(path[: len(prefix)] == prefix for prefix in scopes)

    def wants(self, ev: Event[Any]) -> bool:
        """Whether a local event goes out (types and scope filters)."""
        return bool(self.wire_name(ev.type)) and self.in_scope(ev.scope)

    def check(self, ev: Event[Any]) -> Event[Any]:
        """Middleware: refuse an outbound event at publish time if it cannot go out.

        Encodes the payload and metadata (so the wire carries them as they
        were at publish time), checks the size cap and the outbox policy.

        Raises:
            PayloadTooLargeError, UnregisteredTypeError, CodecError: Encoding.
            OutboxFullError: The outbox is full and its policy is ``"raise"``.
        """
        if ev.origin is not None:
            return ev
        name = self._wire[1].get(id(ev.type))
        if name is None:
            name = self.wire_name(ev.type)
        if not name or (self._scopes is not None and not self.in_scope(ev.scope)):
            return ev
        self._admit(ev, self._encode(ev, name))
        return ev

"""Sharded streams: how a namespace spreads over N streams, and which event goes to which.

Each shard is a stream of its own, ``{<namespace>.<i>[.<k>]}:events``, with
its own hash tag. The tag of shard ``i`` is the first of
``<namespace>.<i>``, ``<namespace>.<i>.1``, ``<namespace>.<i>.2``... whose
Cluster slot lies in the ``i``-th of ``N`` equal slot ranges, so on a
cluster whose primaries own equal contiguous slot ranges (what
``redis-cli --cluster create`` and ``rebalance`` make) ``N`` shards, ``N`` a
multiple of the primaries, spread evenly over them. Every node computes the
same tags: nothing is stored or negotiated.

An event's shard is ``crc32(key) % N`` of its routing key: by default the
top-level scope (``""`` for the root scope), or what a user function
returns. One key always maps to one stream, so the order of one origin's
events within a key holds (a stream is ordered; one sender per stream).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias

import attrs
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ... import Event
from .._outbound import scope_path

__all__ = ["MAX_SHARDS", "ShardLayout", "ShardRoute", "default_route", "shard_namespaces"]

ShardRoute: TypeAlias = Callable[[Event[Any]], str]
"""Returns an event's routing key; events with one key share one stream."""

MAX_SHARDS: Final = 1024


def default_route(ev: Event[Any]) -> str:
    """The routing key by default: the event's top-level scope (``""`` at the root)."""
    scope = ev.scope
    return scope[0] if scope else ""


def shard_namespaces(namespace: str, shards: int) -> tuple[str, ...]:
    """Each shard's namespace (its hash tag), spread over equal slot ranges (see the module)."""
    tags: list[str] = []
    for i in range(shards):
        k = 0
        while True:
            tag = f"{namespace}.{i}" if k == 0 else f"{namespace}.{i}.{k}"
            slot = key_slot(f"{{{tag}}}".encode())
            if slot * shards // REDIS_CLUSTER_HASH_SLOTS == i:
                tags.append(tag)
                break
            k += 1
    return tuple(tags)


def _shard_count(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if not 1 <= value <= MAX_SHARDS:
        raise ValueError(f"{attribute.name} must be in 1..{MAX_SHARDS}, got {value!r}")


class _Last(threading.local):
    """Per publishing thread: the last event routed and its shard (its check and its
    push, which sees the recorded copy, share one route call)."""

    key: tuple[str, tuple[str, ...]] | None = None
    index = 0


@attrs.frozen(kw_only=True)
class ShardLayout:
    """How a namespace spreads over ``shards`` streams.

    Attributes:
        namespace: The mesh's namespace.
        shards: Streams, 1 to :data:`MAX_SHARDS`.
        route: The routing key of an event; ``None``: :func:`default_route`.
        namespaces: Each shard's namespace (hash tag), computed.

    Raises:
        TypeError, ValueError: ``shards`` is not an int in range, or
            ``route`` is not callable.
    """

    namespace: str
    shards: int = attrs.field(validator=_shard_count)
    route: ShardRoute | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.is_callable())
    )
    namespaces: tuple[str, ...] = attrs.field(init=False)
    _cache: dict[str, int] = attrs.field(init=False, factory=dict, eq=False, repr=False)
    _last: _Last = attrs.field(init=False, factory=_Last, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "namespaces", shard_namespaces(self.namespace, self.shards))

    def index_of_key(self, key: str) -> int:
        """The shard of routing key ``key``: ``crc32(utf-8 key) % shards``."""
        index = self._cache.get(key)
        if index is None:
            index = zlib.crc32(key.encode()) % self.shards
            if len(self._cache) < 10_000:  # bounded: keys are usually a few scopes
                self._cache[key] = index
        return index

    def index(self, ev: Event[Any]) -> int:
        """The shard of event ``ev``.

        The route runs once per event on the publishing thread (the check
        and the push see the same id and scope); a later middleware that
        moves the event to another scope routes it again.
        """
        last = self._last
        seen = (ev.id, ev.scope)
        if last.key == seen:
            return last.index
        route = self.route
        key = default_route(ev) if route is None else route(ev)
        if not isinstance(key, str):
            raise TypeError(f"a shard route must return a str, got {key!r} for event {ev.id}")
        index = self.index_of_key(key)
        last.key, last.index = seen, index
        return index

    def shards_for(self, scopes: Iterable[str | tuple[str, ...]] | None) -> frozenset[int]:
        """The shards that can hold events of ``scopes`` (their sub-scopes included).

        With the default route, the shards of the scopes' top-level names; a
        root scope, ``None`` or a user route (which may send any scope
        anywhere) mean every shard.

        Raises:
            ValueError: A scope is neither ``"a/b"`` nor a tuple of names.
        """
        everything = frozenset(range(self.shards))
        if scopes is None or self.route is not None:
            return everything
        if isinstance(scopes, str):
            raise TypeError(f"read_scopes must be an iterable of scopes, got {scopes!r}")
        chosen: set[int] = set()
        for scope in scopes:
            path = scope_path(scope)
            if not path:
                return everything
            chosen.add(self.index_of_key(path[0]))
        return frozenset(chosen)

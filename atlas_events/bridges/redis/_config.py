"""The Redis bridge's options: one attrs class, every option validated on its field."""

from __future__ import annotations

import enum
import math
import os
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import attrs
import redis

from ... import EventKey
from .._outbound import scope_path, select_types
from .._outbox import POLICIES, OutboxPolicy
from ..codec import Codec

__all__ = [
    "CLUSTER_OPTIONS",
    "MAX_DEDUP_WINDOW",
    "RedisBridgeConfig",
    "generated_node_id",
    "redact_url",
]

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.:\-]+$")
_STREAM_ID_RE: Final = re.compile(r"^(0|\$|\d+(-\d+)?)$")
RESERVED_OPTIONS: Final = frozenset(
    {
        "protocol",
        "single_connection_client",
        "decode_responses",
        "retry",
        "connection_pool",
        "redis_connect_func",
    }
)
CLUSTER_OPTIONS: Final = frozenset({"require_full_coverage", "reinitialize_steps", "address_remap"})
"""``client_options`` that only a cluster client takes (a plain one is built without them)."""
MAX_DEDUP_WINDOW: Final = 1 << 20
"""The largest ``dedup_window``: a bitmap of 128 KiB per remembered origin."""
_TIMEOUT_OPTIONS: Final = ("socket_timeout", "socket_connect_timeout")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]  # host[:port] as written (the port may not parse)
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def generated_node_id() -> str:
    """A fresh ``host-pid-random`` node id (letters, digits and ``_.:-`` only)."""
    raw = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
    return re.sub(r"[^A-Za-z0-9_.:\-]", "_", raw)


# ---------------------------------------------------------------- validators


def _int_at_least(low: int, high: int | None = None) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and attribute.default is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an int, got {value!r}")
        if value < low:
            raise ValueError(f"{attribute.name} must be >= {low}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{attribute.name} must be <= {high}, got {value!r}")

    return check


def _seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be finite and > 0, got {value!r}")


def _name(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.default is None:
        return
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{attribute.name} must be a non-empty str of letters, digits and '_.:-', got {value!r}"
        )


def _url(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")


def _policy(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in POLICIES:
        raise ValueError(f"unknown {attribute.name} {value!r}; expected one of {sorted(POLICIES)}")


def _replay_from(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not _STREAM_ID_RE.match(value)):
        raise ValueError(
            f"{attribute.name} must be a stream id ('0', '1700000000000-0'), got {value!r}"
        )


def _codec(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Codec):
        raise TypeError(f"{attribute.name} must be a Codec, got {type(value).__name__}")


def _client_options(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{attribute.name} must be a mapping, got {type(value).__name__}")
    reserved = RESERVED_OPTIONS & value.keys()
    if reserved:
        raise ValueError(f"{attribute.name} may not set {sorted(reserved)}: the bridge sets them")
    for key in _TIMEOUT_OPTIONS:
        seconds = value.get(key)
        if seconds is None:
            continue
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"{attribute.name}[{key!r}] must be seconds, got {seconds!r}")
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"{attribute.name}[{key!r}] must be finite and > 0, got {seconds!r}")


def _check_connection(url: str, options: Mapping[str, Any], cluster: bool | None) -> None:
    """Let redis-py parse ``url`` and build (not open) a connection with ``options``.

    Raises:
        ValueError: redis-py cannot parse ``url`` (the message names ``url``,
            password masked).
        TypeError: redis-py's connection does not take one of ``options``.
    """
    plain = {k: v for k, v in options.items() if k not in CLUSTER_OPTIONS}
    try:
        pool = redis.ConnectionPool.from_url(url, **plain)
    except ValueError as exc:
        raise ValueError(f"url {redact_url(url)!r} is not a Redis URL: {exc}") from None
    try:
        if not cluster:  # the cluster client sorts its own options out
            pool.make_connection()
    except TypeError as exc:
        raise TypeError(f"client_options: redis-py refused them: {exc}") from None
    finally:
        pool.disconnect()


def _types(value: Iterable[enum.Enum | EventKey[Any]] | None) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | enum.Enum | EventKey):
        raise TypeError(f"types must be an iterable of event types, got {value!r}")
    return tuple(value)


def _scopes(value: Iterable[str | tuple[str, ...]] | None) -> tuple[tuple[str, ...], ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"scopes must be an iterable of scopes, got {value!r}")
    return tuple(scope_path(s) for s in value)


def _options(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return {} if value is None else value


@attrs.frozen(kw_only=True)
class RedisBridgeConfig:
    """Every option of a :class:`~atlas_events.bridges.redis.RedisBridge`, validated here.

    Attributes:
        url: The broker URL; ``rediss://`` for TLS, ``redis://user:pass@host``
            for an ACL user.
        namespace: Names the stream ``{namespace}:events``; nodes with the
            same namespace form a mesh.
        types: The event types to send; default: every type the codec
            knows except :data:`~atlas_events.bridges.LOCAL_ONLY_TYPES`.
            Inbound is not filtered.
        scopes: Only send events whose scope path starts with one of these
            (``"agents"``, ``"agents/planner"`` or a tuple); default: all.
        maxlen: Approximate cap on the stream's length (``MAXLEN ~``), entries.
        node_id: This node's unique id, also its consumer group. ``None``: a
            fresh ``host-pid-random`` id whose group is deleted on ``stop()``;
            give a stable id to keep a durable cursor.
        codec: The wire codec (type and payload names, size cap).
        outbox_size: Events the outbox holds while the broker is slow or down.
        outbox_policy: When it is full: ``"drop_oldest"`` (default) or
            ``"drop_newest"`` discard an event (counted in ``outbox_dropped``);
            ``"raise"`` refuses the publish with
            :class:`~atlas_events.exceptions.OutboxFullError`.
        replay_last: A new node first receives the last N entries.
        replay_from: A new node first receives the entries after this stream
            id (``"0"``: everything retained).
        dedup_window: Sequence numbers remembered per origin (a bitmap of
            ``dedup_window`` bits each), at most :data:`MAX_DEDUP_WINDOW`.
        dedup_origins: Origins (node incarnations) remembered.
        batch_size: Most entries per ``XADD`` pipeline and per read.
        block_ms: How long one blocking read waits for new entries, ms.
        max_deliveries: An entry delivered to this node more often than this
            (it was read, and the node died or failed before acknowledging
            it) is dead-lettered instead of dispatched again (reason
            ``"poison"``). Default 3.
        backoff_initial: First reconnect delay, seconds.
        backoff_max: Cap of the (jittered, exponential) reconnect delay, seconds.
        dead_letter_maxlen: Approximate cap on the dead-letter stream, entries.
        client_options: Extra ``redis.Redis`` options (``ssl_ca_certs``,
            ``socket_timeout``, ``username``...). The bridge sets ``protocol``,
            ``retry``, ``decode_responses``, ``single_connection_client`` and
            ``connection_pool`` itself.
        cluster: ``True``: ``url`` is any node of a Redis Cluster (redis-py's
            ``RedisCluster`` follows ``MOVED``/``ASK`` and refreshes its slot
            map); ``False``: a single server; ``None`` (default): ask the
            server (``INFO cluster``) on every connect. See
            ``docs/scaling.md``.
        replica_acks: After each batch, wait (``WAIT``) until this many
            replicas of the stream's primary have it, up to
            ``replica_timeout`` seconds. A primary that dies before its
            replicas confirm fails the wait, so the batch is written again to
            the promoted replica: an event counted as sent survives a
            failover. If fewer replicas confirm in time the batch still
            counts as sent and a warning is logged. Default 0 (Redis
            replicates asynchronously; see ``docs/scaling.md``).
        replica_timeout: The longest ``WAIT`` for ``replica_acks``, seconds.
        receive: ``False``: send only (no reader thread, no consumer group);
            a sharded bridge sets it on the streams a node does not read.
        attach: ``False``: ``start()`` does not install the publish check
            and the outbox on the bus; whoever feeds the bridge calls
            ``publish_check`` and ``outbox.push`` (a sharded bridge routes
            each event to one stream's bridge this way).

    Raises:
        TypeError: An option has the wrong type (a ``bool`` or ``float``
            where an ``int`` is meant), or redis-py's connection does not
            take one of ``client_options``; the message names it.
        ValueError: An option is out of range or not finite, a name has
            characters other than letters, digits and ``_.:-``, both replay
            options are given, a type has no wire name in ``codec``, or
            redis-py cannot parse ``url`` (checked here, before anything
            starts; nothing is connected).
    """

    url: str = attrs.field(default="redis://127.0.0.1:6379/0", validator=_url)
    namespace: str = attrs.field(default="atlas", validator=_name)
    types: tuple[enum.Enum | EventKey[Any], ...] | None = attrs.field(
        default=None, converter=_types
    )
    scopes: tuple[tuple[str, ...], ...] | None = attrs.field(default=None, converter=_scopes)
    maxlen: int = attrs.field(default=100_000, validator=_int_at_least(1))
    node_id: str | None = attrs.field(default=None, validator=_name)
    codec: Codec = attrs.field(factory=Codec, validator=_codec)
    outbox_size: int = attrs.field(default=10_000, validator=_int_at_least(1))
    outbox_policy: OutboxPolicy = attrs.field(default="drop_oldest", validator=_policy)
    replay_last: int | None = attrs.field(default=None, validator=_int_at_least(1))
    replay_from: str | None = attrs.field(default=None, validator=_replay_from)
    dedup_window: int = attrs.field(default=4096, validator=_int_at_least(1, MAX_DEDUP_WINDOW))
    dedup_origins: int = attrs.field(default=10_000, validator=_int_at_least(1))
    batch_size: int = attrs.field(default=500, validator=_int_at_least(1))
    block_ms: int = attrs.field(default=250, validator=_int_at_least(1))
    max_deliveries: int = attrs.field(default=3, validator=_int_at_least(1))
    backoff_initial: float = attrs.field(default=0.05, validator=_seconds)
    backoff_max: float = attrs.field(default=1.0, validator=_seconds)
    dead_letter_maxlen: int = attrs.field(default=10_000, validator=_int_at_least(1))
    client_options: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_options, validator=_client_options
    )
    cluster: bool | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(bool))
    )
    receive: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    replica_acks: int = attrs.field(default=0, validator=_int_at_least(0))
    replica_timeout: float = attrs.field(default=1.0, validator=_seconds)
    attach: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        _check_connection(self.url, self.client_options, self.cluster)
        if self.replay_last is not None and self.replay_from is not None:
            raise ValueError("give replay_last or replay_from, not both")
        if self.backoff_initial > self.backoff_max:
            raise ValueError(
                "backoff_initial must be <= backoff_max, "
                f"got {self.backoff_initial!r}, {self.backoff_max!r}"
            )
        if self.types is not None:
            select_types(self.types, self.codec)  # raises ValueError naming the type

    @property
    def stream_key(self) -> str:
        """The namespace's stream (the braces keep every key on one Cluster slot)."""
        return f"{{{self.namespace}}}:events"

    @property
    def dead_letter_key(self) -> str:
        """The namespace's dead-letter stream."""
        return f"{{{self.namespace}}}:dead"

    @property
    def safe_url(self) -> str:
        """:attr:`url` with its password masked."""
        return redact_url(self.url)

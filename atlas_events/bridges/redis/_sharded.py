"""``ShardedRedisBridge``: one namespace over N streams, one :class:`RedisBridge` per stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypedDict

import attrs

from ..._bus import EventBus
from .._health import BridgeHealth
from ._bridge import RedisBridge
from ._config import RedisBridgeConfig, generated_node_id
from ._sharding import ShardLayout, ShardRoute

__all__ = ["ShardedBridgeHealth", "ShardedRedisBridge"]

_SUMMED = (
    "sent", "send_errors", "rejected", "abandoned", "received", "delivered", "duplicates",
    "gaps", "own_skipped", "dead_lettered", "poisoned", "trimmed", "dispatch_errors",
    "disconnects", "reconnects", "outbox_dropped", "outbox_depth",
)  # fmt: skip


class ShardedBridgeHealth(TypedDict):
    """What :meth:`ShardedRedisBridge.health` reports.

    ``state`` is the worst of the streams' states; ``totals`` sums the
    streams' counters; ``streams`` holds each stream's own
    :class:`~atlas_events.bridges.BridgeHealth` (``stream`` names it).
    """

    state: str
    connected: bool
    node_id: str
    namespace: str
    shards: int
    reading: list[str]
    totals: dict[str, int]
    streams: list[BridgeHealth]


_WORST = ("failed", "disconnected", "connecting", "stopped", "connected")


class ShardedRedisBridge:
    """Connects a bus to a mesh whose namespace spreads over ``shards`` Redis streams.

    Each stream is served by a :class:`RedisBridge` of its own (its own
    outbox, sender, reader, consumer group, de-duplication, trimming count,
    dead-letter stream ``{<shard namespace>}:dead`` and poison backstop),
    all with this node's one ``node_id``. A local event goes to the stream
    of its routing key (see :class:`ShardLayout`): by default its top-level
    scope, so all of ``agents/...`` share one stream and keep their order.
    On Redis Cluster each stream has its own hash tag, so the streams, and
    their load, spread over the primaries.

    A node that gives ``read_scopes`` reads only the streams that can hold
    those scopes (with the default route): the broker filters, and the
    other streams cost it nothing (it still sends to them). It receives
    everything on the streams it reads, also other scopes that hash there.

    Args:
        bus: The bus to bridge.
        url: The broker URL (any node of a cluster).
        namespace: The mesh's namespace; every node of the mesh must use the
            same ``shards`` and ``route``.
        shards: Streams, 1 to 1024. On a cluster, a multiple of the primaries.
        route: The routing key of an event (a ``str``); default: its
            top-level scope. It runs on the publishing thread, once per event.
        read_scopes: Read only the streams that can hold these scopes
            (``"agents"``, ``("agents", "planner")``); default: all.
        **options: Any :class:`RedisBridgeConfig` field but ``namespace``,
            ``receive`` and ``accept`` (``node_id``, ``types``, ``scopes``,
            ``maxlen`` per stream, ``outbox_size`` per stream, ``cluster``...).

    Raises:
        TypeError, ValueError: As :class:`RedisBridge`; ``shards`` out of
            range, ``route`` not callable, a bad scope in ``read_scopes``,
            or ``receive``/``accept`` given.
    """

    def __init__(
        self,
        bus: EventBus,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "atlas",
        *,
        shards: int,
        route: ShardRoute | None = None,
        read_scopes: Iterable[str | tuple[str, ...]] | None = None,
        **options: Any,
    ) -> None:
        taken = {"receive", "accept"} & options.keys()
        if taken:
            raise TypeError(f"a sharded bridge sets {sorted(taken)} itself")
        base = RedisBridgeConfig(url=url, namespace=namespace, **options)  # validates once
        self.layout = ShardLayout(namespace=namespace, shards=shards, route=route)
        self.reading = self.layout.shards_for(read_scopes)
        self.ephemeral = base.node_id is None
        self.node_id = base.node_id or generated_node_id()
        self.bus = bus
        self.config = base
        bridges: list[RedisBridge] = []
        for i, shard_namespace in enumerate(self.layout.namespaces):
            config = attrs.evolve(
                base,
                namespace=shard_namespace,
                node_id=self.node_id,
                receive=i in self.reading,
                accept=self.layout.accepts(i),
            )
            bridge = RedisBridge(bus, config=config)
            bridge.ephemeral = self.ephemeral  # one generated id: each deletes its group on stop
            bridges.append(bridge)
        self.bridges: tuple[RedisBridge, ...] = tuple(bridges)

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def stream_keys(self) -> tuple[str, ...]:
        """Every shard's stream, in shard order."""
        return tuple(b.stream_key for b in self.bridges)

    @property
    def connected(self) -> bool:
        return all(b.connected for b in self.bridges)

    @property
    def state(self) -> str:
        """The worst state of the streams' bridges (``failed`` first, ``connected`` last)."""
        states = {b.state for b in self.bridges}
        return next(s for s in _WORST if s in states)

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout: float | None = 5.0) -> ShardedRedisBridge:
        """Start every stream's bridge (see :meth:`RedisBridge.start`).

        ``timeout`` bounds the whole start, in seconds. If one fails, the
        ones started are stopped again before the error propagates.

        Raises:
            BridgeConnectionError, BusClosedError, RuntimeError: As
                :meth:`RedisBridge.start`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        started: list[RedisBridge] = []
        try:
            for bridge in self.bridges:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                bridge.start(left)
                started.append(bridge)
        except BaseException:
            for bridge in reversed(started):
                bridge.stop(timeout=0)
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every stream's bridge, each with ``timeout`` seconds to drain its outbox."""
        for bridge in self.bridges:
            bridge.stop(timeout)

    async def start_async(
        self,
        timeout: float | None = 5.0,  # noqa: ASYNC109 - as start(): on expiry, stops and raises
    ) -> ShardedRedisBridge:
        """:meth:`start` without blocking the loop; a failure or cancellation stops them all."""
        results = await asyncio.gather(
            *(b.start_async(timeout) for b in self.bridges), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.stop_async(0)
            raise failed[0]
        return self

    async def stop_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - the outbox drain budget of stop()
    ) -> None:
        """:meth:`stop` in worker threads, so the loop keeps running meanwhile."""
        await asyncio.gather(*(b.stop_async(timeout) for b in self.bridges))

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait (seconds) until every stream's bridge is connected; whether they are."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for bridge in self.bridges:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not bridge.wait_connected(left):
                return False
        return True

    def __enter__(self) -> ShardedRedisBridge:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ShardedRedisBridge:
        return await self.start_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()

    # ----------------------------------------------------------------- health

    def health(self) -> ShardedBridgeHealth:
        """Each stream's health, their counters summed, and the worst state."""
        streams = [b.health() for b in self.bridges]
        rows: list[dict[str, Any]] = [dict(h) for h in streams]
        totals = {name: sum(int(row[name]) for row in rows) for name in _SUMMED}
        return {
            "state": self.state,
            "connected": self.connected,
            "node_id": self.node_id,
            "namespace": self.namespace,
            "shards": self.layout.shards,
            "reading": [self.bridges[i].stream_key for i in sorted(self.reading)],
            "totals": totals,
            "streams": streams,
        }

    def __repr__(self) -> str:
        return (
            f"<ShardedRedisBridge {self.node_id!r} {self.state} {self.config.safe_url} "
            f"shards={self.layout.shards}>"
        )

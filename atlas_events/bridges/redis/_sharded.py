"""``ShardedRedisBridge``: one namespace over N streams, one :class:`RedisBridge` per stream."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypedDict

import attrs

from ... import Event, EventBus, SinkStats, Subscription
from ...exceptions import BridgeConnectionError
from .._health import BridgeHealth
from .._outbox import Outbox
from .._threads import in_thread, wait_uncancellable
from ._bridge import RedisBridge, attach
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


class _Router:
    """One publish check and one bus sink for all the streams: each event goes to its stream's.

    The cost per publish does not grow with the number of streams (one
    route, one check, one push), where N attached bridges would each run
    their check and their sink: docs/scaling.md, "Sharded streams".
    """

    __slots__ = ("blocks", "checks", "index", "kind", "name", "outboxes")

    def __init__(self, sharded: ShardedRedisBridge) -> None:
        self.kind = "redis-bridge-sharded"
        self.name = sharded.node_id
        self.blocks = False
        self.index = sharded.layout.index
        self.checks = tuple(b.publish_check for b in sharded.bridges)
        self.outboxes: tuple[Outbox, ...] = tuple(b.outbox for b in sharded.bridges)

    def check(self, ev: Event[Any]) -> Event[Any]:
        """Middleware: the publish check of the event's stream (remote events pass)."""
        if ev.origin is not None:
            return ev
        return self.checks[self.index(ev)](ev)

    def push(self, ev: Event[Any]) -> None:
        """Sink protocol: hand a local event to its stream's outbox."""
        if ev.origin is None:
            self.outboxes[self.index(ev)].push(ev)

    def wait_for_room(self) -> None:
        return None

    def close(self) -> None:
        for outbox in self.outboxes:
            outbox.close()

    def stats(self) -> SinkStats:
        """The streams' outboxes summed (``depth``, ``capacity``, ``dropped``, ``delivered``)."""
        rows: list[dict[str, Any]] = [dict(o.stats()) for o in self.outboxes]
        fields = ("depth", "capacity", "dropped", "delivered")
        summed = {k: sum(int(r.get(k, 0)) for r in rows) for k in fields}
        stats: dict[str, Any] = {"kind": self.kind, "name": self.name, **summed}
        stats["policy"] = self.outboxes[0].policy
        return stats  # type: ignore[return-value]  # SinkStats keys


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
            ``receive`` and ``attach`` (``node_id``, ``types``, ``scopes``,
            ``maxlen`` per stream, ``outbox_size`` per stream, ``cluster``...).

    Raises:
        TypeError, ValueError: As :class:`RedisBridge`; ``shards`` out of
            range, ``route`` not callable, a bad scope in ``read_scopes``,
            or ``receive``/``attach`` given.
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
        taken = {"receive", "attach"} & options.keys()
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
                attach=False,  # the router below feeds it
            )
            bridge = RedisBridge(bus, config=config)
            bridge.ephemeral = self.ephemeral  # one generated id: each deletes its group on stop
            bridges.append(bridge)
        self.bridges: tuple[RedisBridge, ...] = tuple(bridges)
        self._router = _Router(self)
        self._tokens: list[Subscription] = []

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
        if self._tokens:
            raise RuntimeError(f"sharded bridge {self.node_id!r} is already running")
        deadline = None if timeout is None else time.monotonic() + timeout
        started: list[RedisBridge] = []
        try:
            for bridge in self.bridges:
                bridge.start(None)  # threads first; the router attaches once all are running
                started.append(bridge)
            self._attach()
            for bridge in self.bridges:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if left is not None and not bridge.wait_connected(left):
                    reason = bridge.health()["last_error"] or f"no answer within {timeout}s"
                    raise BridgeConnectionError(self.config.safe_url, reason)
        except BaseException:
            self._detach()
            for bridge in reversed(started):
                bridge.stop(timeout=0)
            raise
        return self

    def _attach(self) -> None:
        """Install the router: its publish check first, then its sink (as one bridge does)."""
        self._tokens = attach(self.bus, self._router.check, self._router)

    def _detach(self) -> None:
        for token in self._tokens:
            token()
        self._tokens = []

    def stop(self, timeout: float = 5.0) -> None:
        """Detach from the bus, then stop every stream's bridge (``timeout`` s each to drain)."""
        self._detach()
        for bridge in self.bridges:
            bridge.stop(timeout)

    async def start_async(
        self,
        timeout: float | None = 5.0,  # noqa: ASYNC109 - as start(): on expiry, stops and raises
    ) -> ShardedRedisBridge:
        """:meth:`start` in a worker thread, without blocking the loop.

        If it fails or the awaiting task is cancelled, the bridges it started
        are stopped again before the error propagates.
        """
        starting = in_thread(lambda: self.start(timeout), f"atlas-redis-start[{self.node_id}]")
        try:
            await asyncio.wrap_future(starting)
        except BaseException:
            await wait_uncancellable(
                in_thread(lambda: self._undo_start(starting), f"atlas-redis-undo[{self.node_id}]")
            )
            raise
        return self

    def _undo_start(self, starting: concurrent.futures.Future[ShardedRedisBridge]) -> None:
        if starting.exception() is None:  # waits for start() to finish
            self.stop(0)

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

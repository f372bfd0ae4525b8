"""``RedisBridge``: the lifecycle (start, stop, asyncio variants) and health of one bridge."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, cast

from ... import Event, EventBus, Sink, Subscription
from ...exceptions import BridgeConnectionError, BusClosedError
from .._dedup import DedupWindow
from .._health import (
    Announcer,
    BridgeCounters,
    BridgeHealth,
    BridgeSinkStats,
    BridgeState,
    LinkState,
    new_counters,
)
from .._inbound import Inbound
from .._outbound import Outbound, select_types
from .._outbox import Outbox
from .._threads import in_thread, wait_uncancellable
from ..codec import Codec
from ._config import RedisBridgeConfig, generated_node_id
from ._group import destroy_group
from ._workers import Workers

__all__ = ["RedisBridge", "attach"]

from ..._logging import log_extra

log = logging.getLogger("atlas_events.bridges.redis")

_POLL: Final = 0.005  # seconds between readiness checks of the async lifecycle


def attach(
    bus: EventBus, check: Callable[[Event[Any]], Event[Any]], sink: Sink
) -> list[Subscription]:
    """Install a publish check, then its sink; the tokens that remove them.

    The check first, then the sink: every event the sink gets was admitted
    by the check (the "raise" policy reserves there).

    Raises:
        BusClosedError: The bus is closed (the check is removed again).
    """
    remove_check = bus.add_middleware(check)
    try:
        sink_token, _ = bus.attach_sink(sink)
    except BusClosedError:
        remove_check()
        raise
    return [sink_token, remove_check]


class RedisBridge:
    """Connects a bus to the other nodes of a mesh through one Redis stream.

    Outbound, local events that match ``types`` and ``scopes`` go into a
    bounded outbox (a publish never touches the network) and a sender
    thread appends them to the stream ``{namespace}:events`` with pipelined
    ``XADD ... MAXLEN ~ maxlen``. Inbound, a reader thread reads the stream
    through the consumer group named after ``node_id`` (its pending entries
    first), republishes each remote event on ``bus`` with its original id,
    type, scope, timestamp, correlation and parent ids and
    ``event.origin`` set to the sender's node id, and acknowledges entries
    only once they were dispatched. Remote events are never sent back out.

    Delivery is at-least-once from the broker; duplicates are dropped by
    ``(origin, incarnation, seq)`` within the de-dup window and counted.
    Entries that cannot be turned into events, and entries delivered more
    than ``max_deliveries`` times, are acknowledged, counted, announced
    (``BRIDGE_DEAD_LETTERED``) and copied to ``{namespace}:dead``. Events
    trimmed before this node read them are counted exactly on every start
    and announced (``BRIDGE_EVENTS_LOST``). See ``docs/cross-process.md``.

    Args:
        bus: The bus to bridge (usually the root bus).
        url: The broker URL.
        namespace: Names the stream; nodes with the same namespace form a mesh.
        config: All options at once; or give them as keywords.
        **options: Any other :class:`RedisBridgeConfig` field (``node_id``,
            ``types``, ``scopes``, ``maxlen``, ``outbox_size``,
            ``outbox_policy``, ``max_deliveries``, ``batch_size``...).

    Raises:
        TypeError: ``bus`` is not an :class:`~atlas_events.EventBus`, an
            option has the wrong type, or an unknown option is given.
        ValueError: An option is out of range (see :class:`RedisBridgeConfig`).
    """

    def __init__(
        self,
        bus: EventBus,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "atlas",
        *,
        config: RedisBridgeConfig | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(bus, EventBus):
            raise TypeError(f"bus must be an EventBus, got {type(bus).__name__}")
        if config is None:
            config = RedisBridgeConfig(url=url, namespace=namespace, **options)
        elif options:
            raise TypeError(f"give config or options, not both (got {sorted(options)})")
        self.bus = bus
        self.config = config
        self.ephemeral = config.node_id is None
        self.node_id: str = config.node_id or generated_node_id()
        self.incarnation = os.urandom(8).hex()
        self.counters = new_counters()
        self._dedup = DedupWindow(config.dedup_window, config.dedup_origins)
        self._outbox = Outbox(
            self.node_id,
            "redis-bridge",
            config.outbox_size,
            config.outbox_policy,
            self._wants,
            self._sink_stats,
        )
        self._outbound = Outbound(
            config.codec,
            select_types(config.types, config.codec),
            config.scopes,
            self._outbox,
        )
        self._announcer = Announcer(bus, self.node_id, self.counters)
        self._link = LinkState(self._announcer, config.namespace, config.safe_url, self.counters)
        self._inbound = Inbound(
            bus, config.codec, self._dedup, self.node_id, self.counters, self._announcer
        )
        self._workers = Workers(
            config,
            bus,
            self.node_id,
            self.incarnation,
            self._outbox,
            self._inbound,
            self._link,
            self._announcer,
            self.counters,
        )
        self._life = threading.Lock()
        self._tokens: list[Subscription] = []

    # ------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def codec(self) -> Codec:
        return self.config.codec

    @property
    def stream_key(self) -> str:
        return self.config.stream_key

    @property
    def dead_letter_key(self) -> str:
        return self.config.dead_letter_key

    @property
    def connected(self) -> bool:
        return self._link.state == "connected"

    @property
    def state(self) -> BridgeState:
        return self._link.state

    def _wants(self, ev: Any) -> bool:
        return self._outbound.wants(ev)

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout: float | None = 5.0) -> RedisBridge:
        """Attach to the bus and start the sender and reader threads.

        Args:
            timeout: Wait this long (seconds) for the broker and the consumer
                group; ``None`` returns at once and keeps connecting in the
                background (events published meanwhile wait in the outbox).

        Returns:
            The bridge itself.

        Raises:
            BridgeConnectionError: The broker was not reachable (or refused
                the set-up) within ``timeout``; the bridge is stopped again.
            BusClosedError: The bus is closed.
            RuntimeError: The bridge is already running.
        """
        with self._life:
            if self._link.state != "stopped":
                raise RuntimeError(f"bridge {self.node_id!r} is already running")
            self._reset()
            if self.config.attach:
                self._attach()
            elif self.bus.closed:
                self._link.set("stopped")
                raise BusClosedError(self.bus.name, "start a bridge")
            self._workers.start()
        if timeout is not None and not self._workers.ready.wait(timeout):
            self.stop(timeout=0)
            raise self._no_answer(timeout)
        return self

    def _attach(self) -> None:
        try:
            self._tokens = attach(self.bus, self._outbound.check, self._outbox)
        except BusClosedError:
            self._link.set("stopped")
            raise

    @property
    def publish_check(self) -> Callable[[Event[Any]], Event[Any]]:
        """The bridge's publish check (middleware); installed by :meth:`start` unless
        ``attach=False``, when whoever feeds the bridge (a sharded bridge) calls it."""
        return self._outbound.check

    @property
    def outbox(self) -> Outbox:
        """The bridge's outbox (a bus sink); attached by :meth:`start` unless ``attach=False``."""
        return self._outbox

    def _reset(self) -> None:
        self._link.halt.clear()
        self._workers.reset()
        self._outbox.reopen()
        self._outbound.reset()  # codec registrations may have changed
        self._link.set("connecting")

    def _no_answer(self, timeout: float) -> BridgeConnectionError:
        reason = self._link.last_error or f"no answer within {timeout}s"
        return BridgeConnectionError(self.config.safe_url, reason)

    def stop(self, timeout: float = 5.0) -> None:
        """Detach from the bus, send what the outbox holds, stop the threads.

        Waits up to ``timeout`` seconds for the outbox to drain (events
        still unsent then are counted in ``abandoned``). A bridge with a
        generated ``node_id`` deletes its consumer group. Idempotent; the
        bridge can be started again (also after it ``failed``).

        Raises:
            RuntimeError: Called from one of the bridge's own threads (a
                handler of a remote or ``BRIDGE_*`` event); stop it from
                another thread.
        """
        if threading.current_thread() in self._workers.threads:
            raise RuntimeError(
                f"bridge {self.node_id!r} cannot be stopped from its own thread "
                "(a handler of a remote or BRIDGE_* event); stop it from another thread"
            )
        with self._life:
            if self._link.state == "stopped" and not self._workers.threads:
                return
            for token in self._tokens:
                token()
            self._tokens = []
            self._workers.stop(timeout)
            # its group was created (a send-only bridge has none)
            if self.ephemeral and self.config.receive and self._workers.ready.is_set():
                destroy_group(self.config, self.node_id, self.bus.name)
            self._link.set("stopped")

    async def start_async(
        self,
        timeout: float | None = 5.0,  # noqa: ASYNC109 - as start(): on expiry, stops and raises
    ) -> RedisBridge:
        """:meth:`start` for asyncio code: waits for the broker without blocking the loop.

        The threads start at once; the coroutine then polls for the consumer
        group to be ready. If it times out, the bridge is stopped while
        connecting, or the awaiting task is cancelled (however often), the
        half-started bridge is stopped again before the error propagates, so
        the bus is left as it was. The undoing runs in a worker thread; a
        cancellation takes effect once it is done (at most about
        ``block_ms`` + 2 s).

        Raises:
            BridgeConnectionError, BusClosedError, RuntimeError: as :meth:`start`.
        """
        # start() runs in a thread of its own, behind a future nothing can
        # cancel (not even cancelling every task): whether the bridge was
        # started is then always known, and undone below if need be.
        starting = in_thread(lambda: self.start(None), f"atlas-redis-start[{self.node_id}]")
        try:
            await asyncio.wrap_future(starting)
            if timeout is not None:
                await self._wait_ready(timeout)
        except BaseException:
            undoing = in_thread(
                lambda: self._undo_start(starting), f"atlas-redis-undo[{self.node_id}]"
            )
            await wait_uncancellable(undoing)
            raise
        return self

    async def _wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109 - start()'s budget
        deadline = time.monotonic() + timeout
        while not self._workers.ready.is_set():
            if self._link.state == "stopped":
                raise BridgeConnectionError(self.config.safe_url, "stopped while connecting")
            if time.monotonic() >= deadline:
                raise self._no_answer(timeout)
            await asyncio.sleep(_POLL)

    def _undo_start(self, starting: concurrent.futures.Future[RedisBridge]) -> None:
        """Stop the bridge that ``starting`` started; nothing if start() refused."""
        if starting.exception() is None:  # waits for start() to finish
            try:
                self.stop(0)
            except Exception:  # pragma: no cover - a bug: say it, the caller's error goes on
                log.exception(
                    "bridge %s: could not undo a cancelled start",
                    self.node_id,
                    extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
                )

    async def stop_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - the outbox drain budget of stop()
    ) -> None:
        """:meth:`stop` in a worker thread, so the loop keeps running meanwhile.

        Cancelling the awaiting task does not interrupt the stop: it
        finishes in its thread (the cancellation still propagates).
        """
        await asyncio.shield(asyncio.to_thread(self.stop, timeout))

    async def wait_connected_async(self) -> bool:
        """Wait until the bridge is connected, without blocking the loop.

        Returns ``False`` if the bridge is stopped, failed, or stops first.
        Bound the wait with ``asyncio.timeout(...)``.
        """
        while self._link.state != "connected":
            if self._link.halt.is_set() or self._link.state in ("stopped", "failed"):
                return False
            await asyncio.sleep(_POLL)
        return True

    async def __aenter__(self) -> RedisBridge:
        if self._link.state == "stopped":
            await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()

    def __enter__(self) -> RedisBridge:
        if self._link.state == "stopped":
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- health

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the bridge is connected; return whether it is (seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._link.state != "connected":
            if self._link.state == "failed":
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self._link.halt.wait(0.01):
                return False
        return True

    def _counters(self) -> BridgeCounters:
        counters: dict[str, int] = dict(self.counters)
        counters["duplicates"] = self._dedup.duplicates
        counters["gaps"] = self._dedup.gaps
        counters["outbox_dropped"] = self._outbox.dropped
        return cast("BridgeCounters", counters)

    def health(self) -> BridgeHealth:
        """A snapshot of the link state and the counters; cheap, any thread."""
        link = self._link
        down = link.down_since
        return {
            "state": link.state,
            "connected": link.state == "connected",
            "node_id": self.node_id,
            "namespace": self.config.namespace,
            "stream": self.config.stream_key,
            "url": self.config.safe_url,
            "down_for": None if down is None else time.monotonic() - down,
            "last_error": link.last_error,
            "failure": link.failure,
            "outbox_depth": len(self._outbox),
            "outbox_capacity": self._outbox.capacity,
            "outbox_policy": self._outbox.policy,
            "in_flight": self._workers.in_flight,
            **self._counters(),
        }

    def _sink_stats(self) -> BridgeSinkStats:
        outbox = self._outbox
        return {
            "kind": outbox.kind,
            "name": self.node_id,
            "depth": len(outbox),
            "capacity": outbox.capacity,
            "dropped": outbox.dropped,
            "policy": outbox.policy,
            "delivered": self.counters["sent"],
            "state": self._link.state,
            "connected": self._link.state == "connected",
            "counters": self._counters(),
        }

    def __repr__(self) -> str:
        return (
            f"<RedisBridge {self.node_id!r} {self._link.state} {self.config.safe_url} "
            f"stream={self.config.stream_key!r}>"
        )

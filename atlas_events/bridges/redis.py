"""Bridge an :class:`~atlas_events.EventBus` to Redis Streams.

Several processes (or hosts), each with its own bus and its own
:class:`RedisBridge`, share one event mesh through one Redis stream per
namespace. See ``docs/cross-process.md`` for the topology, the guarantees
and the tuning knobs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Protocol, TypeAlias, TypedDict, TypeVar, cast, get_args
from urllib.parse import urlsplit, urlunsplit

import attrs
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .._bus import EventBus
from .._event import Event, EventKey, EventType, MemberMap
from .._stats import SinkStats
from .._subscription import Subscription
from ..exceptions import (
    BridgeConnectionError,
    BusClosedError,
    CodecError,
    OutboxFullError,
)
from ._dedup import DedupWindow
from ._resp import Conn, FastLink, pack_command
from .codec import Codec, EncodedParts

__all__ = [
    "LOCAL_ONLY_TYPES",
    "BridgeHealth",
    "BridgeSinkStats",
    "BridgeState",
    "BridgeStatus",
    "OutboxPolicy",
    "RedisBridge",
]

log = logging.getLogger("atlas_events.bridges.redis")

OutboxPolicy: TypeAlias = Literal["drop_oldest", "drop_newest", "raise"]
"""What a full outbox does with the next event (see :class:`RedisBridge`)."""

BridgeState: TypeAlias = Literal["stopped", "connecting", "connected", "disconnected"]

LOCAL_ONLY_TYPES: Final = frozenset(
    {
        EventType.HANDLER_ERROR,
        EventType.BRIDGE_CONNECTED,
        EventType.BRIDGE_DISCONNECTED,
        EventType.BRIDGE_RECONNECTED,
    }
)
"""Types a bridge never sends unless listed in ``types`` explicitly."""

ENTRY_FIELD: Final = b"e"
_POLICIES: Final = frozenset(get_args(OutboxPolicy))
_RESERVED_OPTIONS: Final = frozenset(
    {"protocol", "single_connection_client", "decode_responses", "retry", "connection_pool"}
)
_LINK_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.:\-]+$")
_STREAM_ID_RE: Final = re.compile(r"^(0|\$|\d+(-\d+)?)$")
_SOURCE: Final = "atlas_events.bridges.redis"
_POLL: Final = 0.005  # seconds between readiness checks of the async lifecycle


@attrs.frozen(slots=True)
class BridgeStatus:
    """Payload of the ``BRIDGE_CONNECTED`` / ``DISCONNECTED`` / ``RECONNECTED`` events.

    Attributes:
        node_id: The bridge's node id.
        namespace: Its namespace.
        url: The broker URL, password masked.
        error: Why the link went down (``BRIDGE_DISCONNECTED``).
        downtime: Seconds the link was down (``BRIDGE_RECONNECTED``).
    """

    node_id: str
    namespace: str
    url: str
    error: str | None = None
    downtime: float | None = None


class BridgeHealth(TypedDict):
    """What :meth:`RedisBridge.health` reports."""

    state: BridgeState
    connected: bool
    node_id: str
    namespace: str
    stream: str
    url: str
    down_for: float | None
    last_error: str | None
    disconnects: int
    reconnects: int
    outbox_depth: int
    outbox_capacity: int
    outbox_policy: str
    outbox_dropped: int
    in_flight: int
    sent: int
    send_errors: int
    rejected: int
    abandoned: int
    received: int
    delivered: int
    duplicates: int
    own_skipped: int
    dead_lettered: int
    trimmed: int
    gaps: int
    dispatch_errors: int


class BridgeSinkStats(SinkStats, total=False):
    """The bridge's entry in ``bus.stats()["sinks"]`` (``kind == "redis-bridge"``).

    ``depth``/``capacity``/``dropped``/``policy`` describe the outbox and
    ``delivered`` counts events written to Redis; the rest mirror
    :class:`BridgeHealth`.
    """

    state: str
    connected: bool
    sent: int
    received: int
    duplicates: int
    dead_lettered: int
    gaps: int
    disconnects: int
    reconnects: int


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class _Commands(Protocol):
    def execute_command(self, *args: Any) -> Any: ...


def _conn(client: redis.Redis) -> Conn:
    """The client's single connection (``single_connection_client=True``)."""
    conn = client.connection
    if conn is None:  # pragma: no cover - a single-connection client always has one
        raise RedisConnectionError("the client has no connection")
    return cast("Conn", conn)


def _execute(client: redis.Redis, *args: Any) -> Any:
    return cast("_Commands", client).execute_command(*args)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _Stash(threading.local):
    """The parts the publish check encoded, handed to ``push`` on the same thread."""

    pending: tuple[Event[Any], EncodedParts] | None = None


_Item: TypeAlias = tuple[int, Event[Any], "EncodedParts | None"]


def _stashed_parts(
    ev: Event[Any], pending: tuple[Event[Any], EncodedParts] | None
) -> EncodedParts | None:
    """The stashed parts if the publish check passed a copy of ``ev``, else ``None``.

    (A later middleware may return a copy with the same id, payload and
    metadata. A stale stash is harmless: it cannot match another event.)
    """
    if pending is None:
        return None
    seen = pending[0]
    if (
        seen.id == ev.id
        and seen.data is ev.data
        and seen.metadata is ev.metadata
        and seen.type is ev.type
        and seen.scope == ev.scope  # a changed scope must pass the filters again
        and ev.origin is None
    ):
        return pending[1]
    return None


class _Outbox:
    """The bridge's sink: a bounded queue of outbound events, fed under the bus lock."""

    __slots__ = (
        "blocks",
        "capacity",
        "closed",
        "dropped",
        "idle",
        "items",
        "kind",
        "name",
        "policy",
        "raise_when_full",
        "seq",
        "stash",
        "stats_of",
        "wake",
        "wants",
    )

    def __init__(self, bridge: RedisBridge, capacity: int, policy: OutboxPolicy) -> None:
        self.kind = "redis-bridge"
        self.blocks = False
        self.name = bridge.node_id
        self.capacity = capacity
        self.policy = policy
        self.items: deque[_Item] = deque()
        self.wake = threading.Event()
        self.idle = False
        self.closed = False
        self.dropped = 0
        self.seq = 0
        self.raise_when_full = policy == "raise"
        self.stash = _Stash()
        self.wants = bridge._wants
        self.stats_of = bridge._sink_stats

    def push(self, ev: Event[Any]) -> None:
        # Called under the bus's recording lock, so pushes never race each
        # other; the sender thread only pops from the left (atomic), so the
        # deque needs no lock of its own.
        pending = self.stash.pending
        parts: EncodedParts | None
        if pending is not None and pending[0] is ev:
            parts = pending[1]  # the publish check just passed this event on this thread
        else:
            parts = _stashed_parts(ev, pending)
            if parts is None and (ev.origin is not None or not self.wants(ev)):
                return
        if self.closed:
            return
        self.seq = seq = self.seq + 1
        items = self.items
        if len(items) >= self.capacity:
            if self.policy != "drop_oldest":
                self.dropped += 1
                return
            try:
                items.popleft()
            except IndexError:  # the sender just emptied it: nothing was dropped
                pass
            else:
                self.dropped += 1
        items.append((seq, ev, parts))
        if self.idle:
            self.wake.set()

    def take(self, n: int) -> list[_Item]:
        """Pop up to ``n`` items (sender thread only)."""
        items = self.items
        pop = items.popleft
        batch: list[_Item] = []
        append = batch.append
        try:
            for _ in range(min(n, len(items))):
                append(pop())
        except IndexError:  # pragma: no cover - drop_oldest raced us to the last one
            pass
        return batch

    def wait_for_room(self) -> None:
        return None

    def close(self) -> None:
        """Called when the bus closes: take no more events, let the sender finish."""
        self.closed = True
        self.wake.set()

    def stats(self) -> SinkStats:
        return self.stats_of()


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

    Delivery is at-least-once from the broker; duplicates (a retried
    ``XADD`` whose reply was lost, a redelivered pending entry) are dropped
    by ``(origin, incarnation, seq)`` within the de-dup window and counted.
    Entries that cannot be decoded are acknowledged, counted and copied to
    the dead-letter stream ``{namespace}:dead``.

    Args:
        bus: The bus to bridge (usually the root bus).
        url: The broker URL; ``rediss://`` for TLS, ``redis://user:pass@host``
            for an ACL user.
        namespace: Names the stream; nodes with the same namespace form a mesh.
        types: The event types to send; default: every type the codec
            knows except :data:`LOCAL_ONLY_TYPES`. Inbound is not filtered.
        scopes: Only send events whose scope path starts with one of these
            (``"agents"``, ``"agents/planner"`` or a tuple); default: all.
        maxlen: Approximate cap on the stream's length (``MAXLEN ~``).
        node_id: This node's unique id, also its consumer group. Default: a
            fresh ``host-pid-random`` id whose group is deleted on
            :meth:`stop`; give a stable id to keep a durable cursor.
        codec: The wire codec (type and payload names, size cap).
        outbox_size: Events the outbox holds while the broker is slow or down.
        outbox_policy: When it is full: ``"drop_oldest"`` (default) or
            ``"drop_newest"`` discard an event (counted in ``outbox_dropped``);
            ``"raise"`` refuses the publish with
            :class:`~atlas_events.exceptions.OutboxFullError`.
        replay_last: A new node first receives the last N entries.
        replay_from: A new node first receives the entries after this stream
            id (``"0"``: everything retained).
        dedup_window: Sequence numbers remembered per origin.
        dedup_origins: Origins (node incarnations) remembered.
        batch_size: Most entries per ``XADD`` pipeline and per read.
        block_ms: How long one blocking read waits for new entries.
        backoff_initial: First reconnect delay, in seconds.
        backoff_max: Cap of the (jittered, exponential) reconnect delay.
        dead_letter_maxlen: Approximate cap on the dead-letter stream.
        client_options: Extra ``redis.Redis`` options (``ssl_ca_certs``,
            ``socket_timeout``, ``username``...). The bridge sets
            ``protocol``, ``retry``, ``decode_responses`` and
            ``single_connection_client`` itself.

    Raises:
        ValueError: An argument is out of range, a name has characters other
            than letters, digits and ``_.:-``, or a type in ``types`` has no
            wire name in ``codec``.
    """

    def __init__(
        self,
        bus: EventBus,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "atlas",
        *,
        types: Iterable[enum.Enum | EventKey[Any]] | None = None,
        scopes: Iterable[str | tuple[str, ...]] | None = None,
        maxlen: int = 100_000,
        node_id: str | None = None,
        codec: Codec | None = None,
        outbox_size: int = 10_000,
        outbox_policy: OutboxPolicy = "drop_oldest",
        replay_last: int | None = None,
        replay_from: str | None = None,
        dedup_window: int = 4096,
        dedup_origins: int = 10_000,
        batch_size: int = 500,
        block_ms: int = 250,
        backoff_initial: float = 0.05,
        backoff_max: float = 1.0,
        dead_letter_maxlen: int = 10_000,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(bus, EventBus):
            raise TypeError(f"bus must be an EventBus, got {type(bus).__name__}")
        if not isinstance(url, str) or not url:
            raise ValueError(f"url must be a non-empty str, got {url!r}")
        _check_name(namespace, "namespace")
        for label, value in (
            ("maxlen", maxlen),
            ("outbox_size", outbox_size),
            ("batch_size", batch_size),
            ("block_ms", block_ms),
            ("dead_letter_maxlen", dead_letter_maxlen),
        ):
            _check_positive_int(label, value)
        if outbox_policy not in _POLICIES:
            raise ValueError(
                f"unknown outbox_policy {outbox_policy!r}; expected one of {sorted(_POLICIES)}"
            )
        if replay_last is not None and replay_from is not None:
            raise ValueError("give replay_last or replay_from, not both")
        if replay_last is not None:
            _check_positive_int("replay_last", replay_last)
        if replay_from is not None and (
            not isinstance(replay_from, str) or not _STREAM_ID_RE.match(replay_from)
        ):
            raise ValueError(
                f"replay_from must be a stream id ('0', '1700000000000-0'), got {replay_from!r}"
            )
        if not (0 < backoff_initial <= backoff_max):
            raise ValueError(
                "backoff_initial and backoff_max must satisfy 0 < initial <= max, "
                f"got {backoff_initial!r}, {backoff_max!r}"
            )
        options = dict(client_options or {})
        reserved = _RESERVED_OPTIONS & options.keys()
        if reserved:
            raise ValueError(f"client_options may not set {sorted(reserved)}: the bridge sets them")

        self.bus = bus
        self.url = url
        self.namespace = namespace
        self.codec = codec if codec is not None else Codec()
        self.ephemeral = node_id is None
        if node_id is None:
            node_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
            node_id = re.sub(r"[^A-Za-z0-9_.:\-]", "_", node_id)
        self.node_id = _check_name(node_id, "node_id")
        self.incarnation = os.urandom(8).hex()
        self.stream_key = f"{{{namespace}}}:events"
        self.dead_letter_key = f"{{{namespace}}}:dead"
        self.maxlen = maxlen
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.dead_letter_maxlen = dead_letter_maxlen
        self.replay_last = replay_last
        self.replay_from = replay_from
        self._safe_url = redact_url(url)
        self._options = options

        # Wire names by member identity (IntEnum/StrEnum members compare by
        # value), and the same names by id(member) for the publish check's
        # lookup without a method call. One pair, replaced as a whole by
        # start(): every id in the dict has its member held by the map of
        # the same pair, so no id can be reused while it is cached.
        self._wire: tuple[MemberMap[str], dict[int, str]] = (MemberMap(), {})
        self._types: MemberMap[bool] | None = None
        if types is not None:
            chosen: MemberMap[bool] = MemberMap()
            for t in types:
                member = t.type if isinstance(t, EventKey) else t
                if not isinstance(member, enum.Enum) or not self.codec.knows(member):
                    raise ValueError(
                        f"{member!r} has no wire name: register it with the codec first"
                    )
                chosen[member] = True
            self._types = chosen
        self._scopes: tuple[tuple[str, ...], ...] | None = None
        if scopes is not None:
            self._scopes = tuple(_scope_path(s) for s in scopes)
            if () in self._scopes:
                self._scopes = None

        self._own_prefix = self.codec.origin_prefix(self.node_id)
        self._outbox = _Outbox(self, outbox_size, outbox_policy)
        self._stash = self._outbox.stash
        self._encode_parts = self.codec.encode_parts
        self._dedup = DedupWindow(dedup_window, dedup_origins)
        self._rng = random.Random()
        self._xadd_prefix = (
            b"*8\r\n"
            + _bulk(b"XADD")
            + _bulk(self.stream_key.encode())
            + _bulk(b"MAXLEN")
            + _bulk(b"~")
            + _bulk(str(maxlen).encode())
            + _bulk(b"*")
            + _bulk(ENTRY_FIELD)
        )

        self._life = threading.Lock()
        self._state_lock = threading.Lock()
        self._state: BridgeState = "stopped"
        self._down_since: float | None = None
        self._last_error: str | None = None
        self._halt = threading.Event()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tokens: list[Subscription] = []
        self._reader_client: redis.Redis | None = None
        self._sender_client: redis.Redis | None = None
        self._last_id: bytes | None = None
        self._in_flight = 0

        self._disconnects = 0
        self._reconnects = 0
        self._sent = 0
        self._send_errors = 0
        self._rejected = 0
        self._abandoned = 0
        self._received = 0
        self._delivered = 0
        self._own_skipped = 0
        self._dead_lettered = 0
        self._trimmed = 0
        self._dispatch_errors = 0

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float | None = 5.0) -> RedisBridge:
        """Attach to the bus and start the sender and reader threads.

        Args:
            timeout: Wait this long for the broker and the consumer group;
                ``None`` returns at once and keeps connecting in the
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
            if self._state != "stopped":
                raise RuntimeError(f"bridge {self.node_id!r} is already running")
            self._halt.clear()
            self._stopping.clear()
            self._ready.clear()
            self._outbox.closed = False
            self._wire = (MemberMap(), {})  # codec registrations may have changed
            self._set_state("connecting")
            try:
                sink_token, _ = self.bus.attach_sink(self._outbox)
            except BusClosedError:
                self._set_state("stopped")
                raise
            self._tokens = [sink_token, self.bus.add_middleware(self._outbound_check)]
            self._threads = [
                threading.Thread(
                    target=self._send_loop, name=f"atlas-redis-send[{self.node_id}]", daemon=True
                ),
                threading.Thread(
                    target=self._read_loop, name=f"atlas-redis-read[{self.node_id}]", daemon=True
                ),
            ]
            for thread in self._threads:
                thread.start()
        if timeout is not None and not self._ready.wait(timeout):
            self.stop(timeout=0)
            raise self._no_answer(timeout)
        return self

    def _no_answer(self, timeout: float) -> BridgeConnectionError:
        return BridgeConnectionError(
            self._safe_url, self._last_error or f"no answer within {timeout}s"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Detach from the bus, send what the outbox holds, stop the threads.

        Waits up to ``timeout`` seconds for the outbox to drain (events
        still unsent then are counted in ``abandoned``). A bridge with a
        generated ``node_id`` deletes its consumer group. Idempotent; the
        bridge can be started again.

        Raises:
            RuntimeError: Called from one of the bridge's own threads (a
                handler of a remote or ``BRIDGE_*`` event); stop it from
                another thread.
        """
        if threading.current_thread() in self._threads:
            raise RuntimeError(
                f"bridge {self.node_id!r} cannot be stopped from its own thread "
                "(a handler of a remote or BRIDGE_* event); stop it from another thread"
            )
        with self._life:
            if self._state == "stopped" and not self._threads:
                return
            for token in self._tokens:
                token()
            self._tokens = []
            sender, reader = self._threads or (None, None)
            self._stopping.set()
            self._outbox.wake.set()
            if sender is not None:
                sender.join(max(timeout, 0.0))
            self._halt.set()
            self._outbox.wake.set()
            if sender is not None:
                sender.join(2.0)
            reader_client = self._reader_client
            if reader_client is not None:
                # Wake a blocked XREADGROUP at once (the reader then sees _halt).
                _drop_connection(reader_client)
            if reader is not None:
                reader.join(self.block_ms / 1000 + 2.0)
            self._threads = []
            if self.ephemeral and self._sender_client is not None:
                # On a connection of its own: the sender's may still be in use
                # (if its thread outlived the join) or hold unread replies.
                admin = self._client(reader=False)
                try:
                    _execute(admin, "XGROUP", "DESTROY", self.stream_key, self.node_id)
                except (*_LINK_ERRORS, ResponseError) as exc:
                    log.info("bridge %s: could not delete its group: %s", self.node_id, exc)
                finally:
                    admin.close()
            for client in (self._reader_client, self._sender_client):
                if client is not None:
                    client.close()
            self._reader_client = self._sender_client = None
            self._set_state("stopped")

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
        starting = _in_thread(lambda: self.start(None), f"atlas-redis-start[{self.node_id}]")
        try:
            await asyncio.wrap_future(starting)
            if timeout is not None:
                deadline = time.monotonic() + timeout
                while not self._ready.is_set():
                    if self._state == "stopped":
                        raise BridgeConnectionError(self._safe_url, "stopped while connecting")
                    if time.monotonic() >= deadline:
                        raise self._no_answer(timeout)
                    await asyncio.sleep(_POLL)
        except BaseException:
            undoing = _in_thread(
                lambda: self._undo_start(starting), f"atlas-redis-undo[{self.node_id}]"
            )
            await _wait_uncancellable(undoing)
            raise
        return self

    def _undo_start(self, starting: concurrent.futures.Future[RedisBridge]) -> None:
        """Stop the bridge that ``starting`` started; nothing if start() refused."""
        if starting.exception() is None:  # waits for start() to finish
            try:
                self.stop(0)
            except Exception:  # pragma: no cover - a bug: say it, the caller's error goes on
                log.exception("bridge %s: could not undo a cancelled start", self.node_id)

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

        Returns ``False`` if the bridge is stopped or stops first. Bound the
        wait with ``asyncio.timeout(...)``.
        """
        while self._state != "connected":
            if self._halt.is_set() or self._state == "stopped":
                return False
            await asyncio.sleep(_POLL)
        return True

    async def __aenter__(self) -> RedisBridge:
        if self._state == "stopped":
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
        if self._state == "stopped":
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- health

    @property
    def connected(self) -> bool:
        return self._state == "connected"

    @property
    def state(self) -> BridgeState:
        return self._state

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the bridge is connected; return whether it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state != "connected":
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self._halt.wait(0.01):
                return False
        return True

    def health(self) -> BridgeHealth:
        """A snapshot of the link state and the counters; cheap, any thread."""
        down = self._down_since
        outbox = self._outbox
        return {
            "state": self._state,
            "connected": self._state == "connected",
            "node_id": self.node_id,
            "namespace": self.namespace,
            "stream": self.stream_key,
            "url": self._safe_url,
            "down_for": None if down is None else time.monotonic() - down,
            "last_error": self._last_error,
            "disconnects": self._disconnects,
            "reconnects": self._reconnects,
            "outbox_depth": len(outbox.items),
            "outbox_capacity": outbox.capacity,
            "outbox_policy": outbox.policy,
            "outbox_dropped": outbox.dropped,
            "in_flight": self._in_flight,
            "sent": self._sent,
            "send_errors": self._send_errors,
            "rejected": self._rejected,
            "abandoned": self._abandoned,
            "received": self._received,
            "delivered": self._delivered,
            "duplicates": self._dedup.duplicates,
            "own_skipped": self._own_skipped,
            "dead_lettered": self._dead_lettered,
            "trimmed": self._trimmed,
            "gaps": self._dedup.gaps,
            "dispatch_errors": self._dispatch_errors,
        }

    def _sink_stats(self) -> BridgeSinkStats:
        outbox = self._outbox
        return {
            "kind": "redis-bridge",
            "name": self.node_id,
            "depth": len(outbox.items),
            "capacity": outbox.capacity,
            "dropped": outbox.dropped,
            "policy": outbox.policy,
            "delivered": self._sent,
            "state": self._state,
            "connected": self._state == "connected",
            "sent": self._sent,
            "received": self._received,
            "duplicates": self._dedup.duplicates,
            "dead_lettered": self._dead_lettered,
            "gaps": self._dedup.gaps,
            "disconnects": self._disconnects,
            "reconnects": self._reconnects,
        }

    def __repr__(self) -> str:
        return (
            f"<RedisBridge {self.node_id!r} {self._state} {self._safe_url} "
            f"stream={self.stream_key!r}>"
        )

    # ------------------------------------------------------------- outbound

    def _wire_name(self, event_type: enum.Enum) -> str:
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

    def _in_scope(self, path: tuple[str, ...]) -> bool:
        scopes = self._scopes
        return scopes is None or any(path[: len(prefix)] == prefix for prefix in scopes)

    def _wants(self, ev: Event[Any]) -> bool:
        """Whether a local event goes out (types and scope filters)."""
        return bool(self._wire_name(ev.type)) and self._in_scope(ev.scope)

    def _outbound_check(self, ev: Event[Any]) -> Event[Any]:
        """Middleware: refuse an outbound event at publish time if it cannot go out.

        Encodes the payload and metadata (so the wire carries them as they
        were at publish time) and checks the size cap and the outbox policy.
        """
        if ev.origin is not None:
            return ev
        name = self._wire[1].get(id(ev.type))
        if name is None:
            name = self._wire_name(ev.type)
        if not name or (self._scopes is not None and not self._in_scope(ev.scope)):
            return ev
        outbox = self._outbox
        if outbox.raise_when_full and len(outbox.items) >= outbox.capacity:
            raise OutboxFullError(outbox.capacity, self.node_id)
        self._stash.pending = (ev, self._encode_parts(ev, name))
        return ev

    def _encode_batch(self, items: list[_Item]) -> list[bytes]:
        codec = self.codec
        out: list[bytes] = []
        for seq, ev, parts in items:
            try:
                out.append(
                    codec.encode(
                        ev, origin=self.node_id, incarnation=self.incarnation, seq=seq, parts=parts
                    )
                )
            except CodecError as exc:
                self._rejected += 1
                log.error("bridge %s: event %s not sent: %s", self.node_id, ev.id, exc)
        return out

    def _xadd_commands(self, payloads: list[bytes]) -> bytes:
        """One ``XADD`` per payload, packed for a single write."""
        prefix = self._xadd_prefix
        return b"".join([prefix + _bulk(p) for p in payloads])

    def _read_xadd_replies(self, link: FastLink, count: int) -> None:
        """Read the replies to ``count`` ``XADD``s and count them; raises link errors."""
        errors: list[Exception] = []
        read = link.read
        for _ in range(count):
            reply = read()
            if isinstance(reply, Exception):
                errors.append(reply)
        self._sent += count - len(errors)
        if errors:
            self._send_errors += len(errors)
            log.error(
                "bridge %s: the broker refused %d of %d events (dropped): %s",
                self.node_id,
                len(errors),
                count,
                errors[0],
            )

    def _send_loop(self) -> None:
        client = self._sender_client = self._open(reader=False)
        if client is None:
            self._abandon([])
            return
        link = FastLink(_conn(client))
        outbox = self._outbox
        # Up to two batches are on their way: ``sent`` (written, replies not
        # read yet) and ``ready`` (encoded, not written yet). The next batch
        # is taken and encoded while Redis works on the previous one, and
        # written before that one's replies are read.
        sent: list[bytes] = []
        ready: list[bytes] = []
        try:
            while not self._halt.is_set():
                if not ready:
                    items = outbox.take(self.batch_size)
                    if items:
                        ready = self._encode_batch(items)
                    elif not sent:
                        if self._state == "disconnected":
                            if not self._recover(client):
                                break
                            self._link_up()
                        if self._stopping.is_set() or outbox.closed:
                            break
                        outbox.wake.clear()
                        outbox.idle = True
                        if not outbox.items:
                            outbox.wake.wait(0.5)
                        outbox.idle = False
                        continue
                    if not ready and not sent:  # every event of the batch was rejected
                        continue
                self._in_flight = len(sent) + len(ready)
                try:
                    if ready:
                        link.send(self._xadd_commands(ready))
                    if sent:
                        self._read_xadd_replies(link, len(sent))
                except _LINK_ERRORS as exc:
                    # Whatever may not have arrived goes again, in order
                    # (receivers drop the duplicates).
                    ready, sent = sent + ready, []
                    self._in_flight = len(ready)
                    _drop_connection(client)
                    self._link_down(exc)
                    if not self._recover(client):
                        break
                    self._link_up()
                    continue
                if sent:  # replies read: the link works
                    self._link_up()
                sent, ready = ready, []
                self._in_flight = len(sent)
        except Exception:  # pragma: no cover - a bug: keep the process alive, say it loudly
            log.exception("bridge %s: sender thread failed", self.node_id)
        finally:
            if sent:
                # Halted with a batch written but unconfirmed: read its replies
                # (so it counts as sent, and the connection carries no stale
                # replies); if the link fails now, it counts as abandoned.
                try:
                    self._read_xadd_replies(link, len(sent))
                    sent = []
                except _LINK_ERRORS:
                    pass
            self._abandon(sent + ready)

    def _abandon(self, payloads: list[bytes]) -> None:
        """Count what the sender leaves unsent when it stops."""
        outbox = self._outbox
        left = len(payloads) + len(outbox.items)
        if left:
            self._abandoned += left
            outbox.items.clear()
            log.warning("bridge %s: stopped with %d events unsent", self.node_id, left)
        self._in_flight = 0

    # -------------------------------------------------------------- inbound

    def _read_loop(self) -> None:
        client = self._reader_client = self._open(reader=True)
        if client is None:
            return
        link = FastLink(_conn(client))
        need_setup = True
        cursor: bytes | None = b"0"
        attempt = 0
        while not self._halt.is_set() and not self.bus.closed:
            try:
                if need_setup:
                    link.settle()  # redis-py reads the next reply on this connection
                    self._log_owed(link)
                    self._setup_group(client)
                    need_setup = False
                    cursor = b"0"  # pending entries first
                    attempt = 0
                    self._ready.set()
                    self._link_up()
                if cursor is not None:
                    entries = self._read(link, cursor, None)
                    if not entries:
                        cursor = None
                        continue
                    cursor = entries[-1][0]
                else:
                    entries = self._read(link, b">", self.block_ms)
                    if not entries:
                        continue
                if not self._process(link, entries):
                    break
            except ResponseError as exc:
                if self._halt.is_set():
                    break
                self._last_error = f"{type(exc).__name__}: {exc}"
                if str(exc).startswith("NOGROUP"):
                    log.warning("bridge %s: consumer group vanished; re-creating it", self.node_id)
                    need_setup = True
                    continue
                log.error("bridge %s: broker refused a read: %s", self.node_id, exc)
                if not self._sleep(attempt):
                    break
                attempt += 1
            except _LINK_ERRORS as exc:
                if self._halt.is_set():
                    break
                _drop_connection(client)
                self._link_down(exc)
                if not self._recover(client):
                    break
                need_setup = True
            except Exception:
                if self._halt.is_set():
                    break
                log.exception("bridge %s: reader failed; retrying", self.node_id)
                _drop_connection(client)
                if not self._sleep(attempt):
                    break
                attempt += 1
        # Read the replies to the last acknowledgements (they were applied
        # anyway) unless stop() already closed the connection.
        try:
            link.settle()
        except (*_LINK_ERRORS, ResponseError):
            pass
        self._log_owed(link)

    def _log_owed(self, link: FastLink) -> None:
        """Log error replies to acknowledgements and dead letters sent ahead."""
        errors = link.owed_errors
        if errors:
            log.error(
                "bridge %s: broker refused %d acks/dead letters: %s",
                self.node_id,
                len(errors),
                errors[0],
            )
            errors.clear()

    def _setup_group(self, client: redis.Redis) -> None:
        """Create this node's consumer group unless it exists."""
        start: str | bytes
        if self._last_id is not None:
            start = self._last_id  # re-creating after the broker lost it
        elif self.replay_from is not None:
            start = self.replay_from
        elif self.replay_last is not None:
            newest = cast(
                "list[Any]",
                _execute(
                    client, "XREVRANGE", self.stream_key, "+", "-", "COUNT", self.replay_last + 1
                ),
            )
            start = newest[-1][0] if len(newest) > self.replay_last else "0"
        else:
            start = "$"
        try:
            _execute(client, "XGROUP", "CREATE", self.stream_key, self.node_id, start, "MKSTREAM")
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
            if self._last_id is None and (self.replay_last or self.replay_from):
                log.info(
                    "bridge %s: group exists, resuming its cursor (replay ignored)", self.node_id
                )

    def _read(
        self, link: FastLink, cursor: bytes, block: int | None
    ) -> list[tuple[bytes, list[bytes] | None]]:
        args: list[bytes | str | int] = ["XREADGROUP", "GROUP", self.node_id, self.node_id]
        args += ["COUNT", self.batch_size]
        if block is not None:
            args += ["BLOCK", block]
        args += ["STREAMS", self.stream_key, cursor]
        link.send(pack_command(*args))
        reply = link.read()  # after the replies to the previous batch's XACK
        if link.owed_errors:
            self._log_owed(link)
        if isinstance(reply, Exception):
            raise reply
        if not reply:
            return []
        return cast("list[tuple[bytes, list[bytes] | None]]", reply[0][1])

    def _process(self, link: FastLink, entries: list[tuple[bytes, list[bytes] | None]]) -> bool:
        """Dispatch a batch, then dead-letter and acknowledge it; ``False`` if the bus closed."""
        decode = self.codec._decode
        check = self._dedup.check
        publish = self.bus.publish_event
        node_id = self.node_id
        own = self._own_prefix
        acks: list[bytes] = []
        dead: list[tuple[bytes, list[bytes], str, str]] = []
        alive = True
        for entry_id, fields in entries:
            if fields is None:  # trimmed (or deleted) while pending
                self._trimmed += 1
                acks.append(entry_id)
                continue
            self._received += 1
            raw = fields[1] if len(fields) == 2 and fields[0] == ENTRY_FIELD else None
            if raw is None:
                dead.append((entry_id, fields, "malformed", f"no {ENTRY_FIELD!r} field"))
                acks.append(entry_id)
                continue
            if raw.startswith(own):  # this node's own event: no need to decode it
                self._own_skipped += 1
                acks.append(entry_id)
                continue
            try:
                origin, incarnation, seq, event = decode(raw)
            except CodecError as exc:
                dead.append((entry_id, fields, exc.reason, str(exc)))
                acks.append(entry_id)
                continue
            if origin == node_id:
                self._own_skipped += 1
                acks.append(entry_id)
                continue
            if check(origin, incarnation, seq):
                acks.append(entry_id)
                continue
            try:
                publish(event)
                self._delivered += 1
            except BusClosedError:
                alive = False
                break
            except Exception as exc:  # middleware refusal, raise_handler_errors...
                self._dispatch_errors += 1
                log.warning("bridge %s: remote event %s failed locally: %r", node_id, event.id, exc)
            acks.append(entry_id)
        self._finish(link, acks, dead)
        return alive

    def _finish(
        self,
        link: FastLink,
        acks: list[bytes],
        dead: list[tuple[bytes, list[bytes], str, str]],
    ) -> None:
        """Write dead letters, then acknowledge, without waiting for the replies.

        They are sent ahead: the next read's round trip brings their replies
        back (Redis applies them first, in order), which saves a round trip
        per batch.
        """
        if not acks:
            return
        commands: list[bytes] = []
        for entry_id, fields, reason, error in dead:
            log.warning(
                "bridge %s: entry %s dead-lettered (%s): %s",
                self.node_id,
                entry_id.decode(),
                reason,
                error,
            )
            commands.append(
                pack_command(
                    "XADD",
                    self.dead_letter_key,
                    "MAXLEN",
                    "~",
                    self.dead_letter_maxlen,
                    "*",
                    "x-reason",
                    reason,
                    "x-error",
                    error[:1000],
                    "x-id",
                    entry_id,
                    "x-node",
                    self.node_id,
                    *fields,
                )
            )
        commands.append(pack_command("XACK", self.stream_key, self.node_id, *acks))
        link.send_ahead(b"".join(commands), len(commands))
        self._dead_lettered += len(dead)
        self._last_id = acks[-1]

    # -------------------------------------------------------- link handling

    def _client(self, *, reader: bool) -> redis.Redis:
        options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
            "socket_keepalive": True,
        }
        options.update(self._options)
        if reader:
            floor = self.block_ms / 1000 + 2.0
            timeout = options.get("socket_timeout")
            if timeout is not None and timeout < floor:
                options["socket_timeout"] = floor
        options.update(
            protocol=2,
            single_connection_client=True,
            decode_responses=False,
            retry=Retry(NoBackoff(), 0),
        )
        return redis.Redis.from_url(self.url, **options)

    def _open(self, *, reader: bool) -> redis.Redis | None:
        """Connect a client, retrying with backoff; ``None`` if the bridge halts first."""
        attempt = 0
        while not self._halt.is_set():
            try:
                return self._client(reader=reader)
            except (*_LINK_ERRORS, ResponseError) as exc:
                self._link_down(exc)
                if not self._sleep(attempt):
                    break
                attempt += 1
        return None

    def _set_state(self, state: BridgeState) -> None:
        with self._state_lock:
            self._state = state
            if state != "disconnected":
                self._down_since = None

    def _link_down(self, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with self._state_lock:
            self._last_error = error
            if self._state != "connected":
                return
            self._state = "disconnected"
            self._down_since = time.monotonic()
            self._disconnects += 1
        log.warning("bridge %s: lost the broker (%s); reconnecting", self.node_id, error)
        self._announce(EventType.BRIDGE_DISCONNECTED, error=error)

    def _link_up(self) -> None:
        if self._state == "connected":
            return
        with self._state_lock:
            if self._state not in ("connecting", "disconnected") or self._halt.is_set():
                return
            first = self._state == "connecting"
            down = self._down_since
            downtime = None if down is None else time.monotonic() - down
            self._state = "connected"
            self._down_since = None
            if not first:
                self._reconnects += 1
        if first:
            log.info("bridge %s: connected to %s", self.node_id, self._safe_url)
            self._announce(EventType.BRIDGE_CONNECTED)
        else:
            log.warning("bridge %s: reconnected after %.2fs", self.node_id, downtime or 0.0)
            self._announce(EventType.BRIDGE_RECONNECTED, downtime=downtime)

    def _announce(
        self, event_type: EventType, *, error: str | None = None, downtime: float | None = None
    ) -> None:
        status = BridgeStatus(self.node_id, self.namespace, self._safe_url, error, downtime)
        try:
            self.bus.publish(event_type, status, source=_SOURCE)
        except BusClosedError:
            pass
        except Exception:  # a failing middleware or handler must not kill the bridge
            log.exception("bridge %s: could not publish %s", self.node_id, event_type)

    def _sleep(self, attempt: int) -> bool:
        """Back off before retry ``attempt``; ``False`` if the bridge is halting."""
        delay = min(self.backoff_max, self.backoff_initial * (2 ** min(attempt, 30)))
        delay = delay / 2 + self._rng.random() * delay / 2
        return not self._halt.wait(delay)

    def _recover(self, client: redis.Redis) -> bool:
        """Ping with backoff until the broker answers; ``False`` if halting."""
        attempt = 0
        while True:
            if not self._sleep(attempt):
                return False
            attempt += 1
            try:
                client.ping()
                return True
            except (*_LINK_ERRORS, ResponseError) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"


_R = TypeVar("_R")


def _in_thread(fn: Callable[[], _R], name: str) -> concurrent.futures.Future[_R]:
    """Run ``fn`` in a new daemon thread; its future cannot be cancelled."""
    future: concurrent.futures.Future[_R] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()  # running: cancel() now returns False

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to whoever waits for the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


async def _wait_uncancellable(future: concurrent.futures.Future[Any]) -> None:
    """Wait for ``future`` to finish, absorbing cancellations until it has; then re-raise one."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            cancelled = True
        except BaseException:  # its own error: the function reports it
            break
    if cancelled:
        raise asyncio.CancelledError


def _drop_connection(client: redis.Redis) -> None:
    """Close the client's socket so the next command starts on a clean one."""
    if client.connection is not None:
        _conn(client).disconnect()


def _check_name(value: object, label: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{label} must be a non-empty str of letters, digits and '_.:-', got {value!r}"
        )
    return value


def _check_positive_int(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be an int >= 1, got {value!r}")


def _scope_path(scope: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(scope, str):
        return tuple(part for part in scope.split("/") if part)
    if isinstance(scope, tuple) and all(isinstance(p, str) and p for p in scope):
        return scope
    raise ValueError(f"a scope is a 'a/b' str or a tuple of names, got {scope!r}")

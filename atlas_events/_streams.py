"""Async streams: per-consumer bounded queues fed by the bus.

A stream is a *sink* of the bus: the publisher, in whatever thread it runs,
appends each matching event to the stream's own queue while it holds the
bus's recording lock (so every stream sees events in ``seq`` order), and
wakes the consumer only if it is waiting. The consumer reads on its event
loop with ``async for``. A slow consumer only ever fills its own queue.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, get_args

import attrs

from ._checks import at_least, check_seconds, check_str
from ._event import ANY, Event
from ._history import History
from ._receivers import check_one_arg_callable
from ._release import KEPT, keep, release_kept
from ._stats import SinkStats
from .exceptions import StreamClosedError

if TYPE_CHECKING:
    from ._buslike import BusLike
    from ._subscription import Subscription

__all__ = ["EventStream", "Policy", "Replay", "StreamOptions"]

Policy: TypeAlias = Literal["drop_oldest", "drop_newest", "block"]
Replay: TypeAlias = bool | int | Literal["all"]
POLICIES: Final = frozenset(get_args(Policy))


class _Queue:
    """The sink half of a stream: lives in the bus, shared with the consumer.

    Kept separate from :class:`EventStream` so that an abandoned stream
    object can be garbage-collected (which detaches this queue).
    """

    __slots__ = (
        "block_timeout",
        "blocks",
        "bus",
        "capacity",
        "closed",
        "correlation_id",
        "delivered",
        "dropped",
        "event_type",
        "filter",
        "items",
        "kind",
        "lock",
        "loop",
        "name",
        "narrow",
        "not_full",
        "policy",
        "room_waiters",
        "terminal",
        "waiter",
        "waker",
    )

    def __init__(
        self,
        bus: BusLike,
        event_type: enum.Enum,
        filter: Callable[[Event[Any]], bool] | None,
        correlation_id: str | None,
        capacity: int,
        policy: Policy,
        block_timeout: float,
        loop: asyncio.AbstractEventLoop,
        name: str,
    ) -> None:
        self.kind = "stream"
        self.bus = bus
        self.event_type = event_type
        self.filter = filter
        self.correlation_id = correlation_id
        self.capacity = capacity
        self.policy = policy
        self.blocks = policy == "block"
        self.block_timeout = block_timeout
        self.loop = loop
        self.name = name
        self.terminal = bus.terminal_ids  # ids: membership by identity, not value
        self.items: deque[Event[Any]] = deque()
        self.lock = threading.Lock()
        self.not_full = threading.Condition(self.lock)
        self.waiter: asyncio.Future[None] | None = None
        self.room_waiters = 0  # publishers blocked in wait_for_room
        self.waker = _waker_of(loop)
        self.narrow = correlation_id is not None or filter is not None
        self.closed = False
        self.dropped = 0
        self.delivered = 0

    def matches(self, ev: Event[Any]) -> bool:
        if self.event_type is not ANY and ev.type is not self.event_type:
            return False
        return not self.narrow or self._narrow_match(ev)

    def _narrow_match(self, ev: Event[Any]) -> bool:
        if self.correlation_id is not None and ev.correlation_id != self.correlation_id:
            return False
        flt = self.filter
        if flt is not None:
            try:
                return bool(flt(ev))
            except Exception:  # a broken filter must not break the publisher
                return False
        return True

    # -- publisher side (any thread, under the bus's recording lock) ---------

    def push(self, ev: Event[Any]) -> None:
        # Paid by the publisher once per stream per event: the common case
        # (a type check, room in the queue, consumer not parked) stays
        # inline (docs/performance.md, "Streams").
        et = self.event_type
        if (et is not ANY and ev.type is not et) or (self.narrow and not self._narrow_match(ev)):
            return
        with self.lock:
            if self.closed:
                return
            items = self.items
            if len(items) >= self.capacity and not self.blocks and not self._make_room_locked(ev):
                return
            items.append(ev)
            if self.waiter is not None:
                self._wake_locked()

    def _make_room_locked(self, ev: Event[Any]) -> bool:
        """A full non-blocking queue: apply the policy; ``False`` drops ``ev``."""
        terminal = id(ev.type) in self.terminal
        if terminal or self.policy == "drop_oldest":
            if not self._evict_oldest_locked() and not terminal:
                self.dropped += 1  # the queue holds only terminal events
                return False
            return True
        self.dropped += 1  # drop_newest, non-terminal arrival
        return False

    def _evict_oldest_locked(self) -> bool:
        """Drop the oldest non-terminal queued event; ``False`` if there is none."""
        items = self.items
        terminal = self.terminal
        if id(items[0].type) not in terminal:
            keep(items.popleft())  # dropped after the locks are left (see _release)
            self.dropped += 1
            return True
        for i, queued in enumerate(items):
            if id(queued.type) not in terminal:
                keep(queued)
                del items[i]
                self.dropped += 1
                return True
        return False

    def _wake_locked(self) -> None:
        waiter = self.waiter
        if waiter is None:
            return
        self.waiter = None
        loop = self.loop
        # _get_running_loop: None off-loop, without raising (a publisher
        # thread has no loop; raising and catching costs ~1 us per wake).
        if asyncio._get_running_loop() is loop:
            if not waiter.done():
                waiter.set_result(None)
        else:
            self.waker.wake(waiter)

    def wait_for_room(self) -> None:
        """``block`` policy: hold the publisher until the queue has room.

        Waits at most ``block_timeout`` seconds; then, or at once when the
        publisher runs on the consumer's own loop (waiting would deadlock),
        the oldest non-terminal events are dropped down to capacity.
        """
        # Room check without the lock: only this publisher's own push can have
        # filled the queue past capacity since, and len() is atomic. Saves a
        # lock round trip per stream per event (docs/performance.md, "Streams").
        if len(self.items) <= self.capacity:
            return
        with self.lock:
            if len(self.items) <= self.capacity or self.closed:
                return
            if asyncio._get_running_loop() is not self.loop:
                deadline = time.monotonic() + self.block_timeout
                self.room_waiters += 1
                try:
                    while len(self.items) > self.capacity and not self.closed:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self.not_full.wait(left)
                finally:
                    self.room_waiters -= 1
            while len(self.items) > self.capacity and self._evict_oldest_locked():
                pass
        if KEPT:
            release_kept()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.not_full.notify_all()
            self._wake_locked()

    def stats(self) -> SinkStats:
        return {
            "kind": "stream",
            "name": self.name,
            "depth": len(self.items),
            "capacity": self.capacity,
            "dropped": self.dropped,
            "policy": self.policy,
            "delivered": self.delivered,
        }


class _LoopWaker:
    """Wakes parked consumers of one event loop from other threads, one hop per batch.

    Every stream of a loop shares it. The first wake schedules one
    ``call_soon_threadsafe`` (a write to the loop's self-pipe, a syscall);
    wakes requested before the loop has run it join that batch for free.
    A publisher fanning an event out to N streams whose consumers are
    parked so costs one thread hop instead of N (docs/performance.md,
    "Streams").
    """

    __slots__ = ("__weakref__", "_lock", "_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[asyncio.Future[None]] = []
        self._scheduled = False

    def wake(self, waiter: asyncio.Future[None]) -> None:
        """Resolve ``waiter`` on its loop soon (any thread; never blocks)."""
        with self._lock:
            self._pending.append(waiter)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _run(self) -> None:
        with self._lock:
            waiters, self._pending = self._pending, []
            self._scheduled = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


# One waker per loop, held weakly by the loop it serves: a cache, not a
# registry -- it dies with its loop and carries no configuration.
_WAKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaker] = (
    weakref.WeakKeyDictionary()
)
_WAKERS_LOCK = threading.Lock()


def _waker_of(loop: asyncio.AbstractEventLoop) -> _LoopWaker:
    with _WAKERS_LOCK:
        try:
            waker = _WAKERS.get(loop)
            if waker is None:
                waker = _WAKERS[loop] = _LoopWaker(loop)
        except TypeError:  # a loop class without weak references: a waker per stream
            waker = _LoopWaker(loop)
        return waker


def _seconds(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    check_seconds(attr.name, value)


def _replay(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or value == "all":
        return
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"replay must be False, True, 'all' or an int >= 0, got {value!r}")


def _policy(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value not in POLICIES:
        raise ValueError(f"unknown policy {value!r}; expected one of {sorted(POLICIES)}")


@attrs.frozen
class StreamOptions:
    """The validated options of one stream (see :meth:`EventBus.stream`).

    Raises:
        TypeError: An option has the wrong type (the message names it).
        ValueError: An option is out of range (the message names it).
    """

    max_queue: int = attrs.field(default=1000, validator=at_least(1))
    policy: Policy = attrs.field(default="drop_oldest", validator=_policy)
    replay: Replay = attrs.field(default=False, validator=_replay)
    since_seq: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(at_least(0))
    )
    block_timeout: float = attrs.field(default=1.0, validator=_seconds)


class EventStream:
    """An async iterator over a bus's events, with its own bounded queue.

    Create with :meth:`EventBus.stream` on a running event loop; the stream
    is attached at once, so no event published after the call is missed::

        async with bus.stream(EventType.TASK_COMPLETED, replay="all") as events:
            async for event in events:
                ...

    Queue policies when the queue holds ``max_queue`` events:

    * ``"drop_oldest"`` (default): the oldest queued event is discarded;
    * ``"drop_newest"``: the arriving event is discarded;
    * ``"block"``: the publisher waits (up to ``block_timeout`` seconds,
      never on the consumer's own loop), then the oldest are discarded.

    Discards are counted (:attr:`dropped`). Terminal events (the bus's
    ``terminal_types``) are never discarded: a non-terminal one makes room.

    ``replay`` delivers matching history first (``True``/``"all"``, or the
    last N), then live events, with no gap and no duplicate at the seam.
    ``since_seq`` replays the history after that ``seq`` (for resuming); if
    history no longer reaches back that far, :attr:`gap` tells what is
    missing (also for a run trimmed, evicted or cleared from per-run
    history). A stream with ``correlation_id`` reads that run's history and
    ends by itself after the run's terminal event. Closing the bus ends
    every stream after its queued events; leaving ``async with`` (also by
    cancellation), :meth:`close` / :meth:`aclose` or garbage collection
    detaches the queue. A cancelled wait (``asyncio.timeout()`` around
    :meth:`get`, a cancelled consumer task) ends only that wait, like
    ``asyncio.Queue.get``: the stream stays attached and loses nothing.

    Raises:
        TypeError, ValueError: An option is invalid (the message names it),
            before anything is attached.
        InvalidHandlerError: ``filter`` is not a one-argument sync callable.
        RuntimeError: No event loop is running.
        BusClosedError: The bus is closed.
    """

    def __init__(
        self,
        bus: BusLike,
        event_type: enum.Enum,
        *,
        filter: Callable[[Event[Any]], bool] | None = None,
        correlation_id: str | None = None,
        replay: Replay = False,
        since_seq: int | None = None,
        max_queue: int = 1000,
        policy: Policy = "drop_oldest",
        block_timeout: float = 1.0,
        name: str | None = None,
    ) -> None:
        StreamOptions(max_queue, policy, replay, since_seq, block_timeout)
        if filter is not None:
            check_one_arg_callable(filter, "filter")
        check_str("correlation_id", correlation_id, allow_none=True)
        check_str("name", name, allow_none=True)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "bus.stream() needs a running event loop: call it from async code"
            ) from None
        label = name or (
            f"stream#{id(self):x}" if event_type is ANY else f"{event_type.name}#{id(self):x}"
        )
        self._queue = q = _Queue(
            bus, event_type, filter, correlation_id, max_queue, policy, block_timeout, loop, label
        )
        self._bus = bus
        self.gap: tuple[int, int] | None = None
        self._ended = False
        self._pending_end = False
        self.replay_count = 0

        def take_replay(history: History) -> list[Event[Any]]:
            if since_seq is None and replay is False:
                return []
            # Without per-run history a run's events are read from the main one.
            run = correlation_id if history.max_runs and history.run_limit else None
            if since_seq is None and replay is not True and isinstance(replay, int):
                # Scans from the newest end: the lock is held for O(replay) work.
                return history.newest(replay, q.matches, run)
            events = history.events(run)
            if since_seq is not None:
                if run is None:  # every seq is recorded: a hole was evicted
                    oldest = events[0].seq if events else bus.last_seq + 1
                    if oldest > since_seq + 1 and since_seq < bus.last_seq:
                        self.gap = (since_seq + 1, oldest - 1)
                else:  # a run's seqs are sparse: only its own trimmed events are missing
                    lost = history.run_trimmed_upto(run)
                    if lost is not None and lost > since_seq:
                        self.gap = (since_seq + 1, lost)
                events = [e for e in events if e.seq > since_seq]
            matched = [e for e in events if q.matches(e)]
            if replay is not True and replay != "all" and replay is not False:
                matched = matched[max(0, len(matched) - int(replay)) :] if replay else []
            return matched

        self._token: Subscription
        self._token, backlog = bus.attach_sink(q, replay_from=take_replay)
        self._backlog: deque[Event[Any]] = deque(backlog)
        self.replay_count = len(backlog)
        self._finalizer = weakref.finalize(self, self._token)

    # -- properties -----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._queue.name

    @property
    def dropped(self) -> int:
        """Events discarded by the queue policy so far."""
        return self._queue.dropped

    @property
    def depth(self) -> int:
        """Events waiting in the queue (not counting replayed history)."""
        return len(self._queue.items)

    @property
    def closed(self) -> bool:
        return self._ended

    def stats(self) -> SinkStats:
        return self._queue.stats()

    # -- iteration ---------------------------------------------------------------

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event[Any]:
        if self._pending_end:
            self.close()
        if self._ended:
            raise StopAsyncIteration
        q = self._queue
        while True:
            if self._backlog:
                ev = self._backlog.popleft()
                break
            with q.lock:
                if q.items:
                    ev = q.items.popleft()
                    q.delivered += 1
                    if q.room_waiters:  # notify only a publisher that waits for room
                        q.not_full.notify_all()
                    break
                if q.closed:
                    fut = None
                else:
                    fut = q.loop.create_future()
                    q.waiter = fut
            if fut is None:
                self.close()
                raise StopAsyncIteration
            try:
                await fut
            except asyncio.CancelledError:
                # Only this wait ends (like asyncio.Queue.get): the stream
                # stays attached and nothing was taken from the queue.
                with q.lock:
                    if q.waiter is fut:
                        q.waiter = None
                raise
        if q.correlation_id is not None and id(ev.type) in q.terminal:
            self._pending_end = True
        return ev

    async def get(self) -> Event[Any]:
        """Return the next event (wrap in ``asyncio.timeout()`` to bound the wait).

        Raises:
            StreamClosedError: The stream has ended.
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise StreamClosedError(f"stream {self.name} has ended") from None

    def get_nowait(self) -> Event[Any] | None:
        """Return the next queued event, or ``None`` if none is waiting."""
        if self._backlog:
            return self._backlog.popleft()
        q = self._queue
        with q.lock:
            if not q.items:
                return None
            q.delivered += 1
            if q.room_waiters:
                q.not_full.notify_all()
            return q.items.popleft()

    def close(self) -> None:
        """Detach from the bus and end iteration (queued events are discarded).

        Synchronous and immediate: callable from any code, idempotent.
        """
        if self._ended:
            return
        self._ended = True
        self._finalizer.detach()
        self._token()
        self._queue.close()
        self._queue.items.clear()
        self._backlog.clear()

    async def aclose(self) -> None:
        """:meth:`close` for async clean-up code (``contextlib.aclosing``); same effect."""
        self.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        q = self._queue
        return (
            f"<EventStream {q.name} depth={len(q.items)}/{q.capacity} "
            f"dropped={q.dropped} policy={q.policy}{' ended' if self._ended else ''}>"
        )

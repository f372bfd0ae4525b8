"""Shutdown: ``close()`` while other threads publish, subscribe and consume.

Publishers either complete (their event is recorded) or get
:class:`BusClosedError`; nothing hangs; async streams end; a publisher held
by a ``block``-policy stream is released. ``close()`` landing between an
operation's "is it closed?" check and its registration leaves nothing
registered on the closed bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from atlas_events import ANY, BusClosedError, Event, EventBus, EventType

from .conftest import Workers

ET = EventType
PUBLISHERS_PER_BUS = 2


def _buses() -> tuple[EventBus, EventBus, EventBus]:
    root = EventBus(history_limit=1_000_000, name="root")
    a = root.scope("a", history_limit=1_000_000)
    b = a.scope("b", history_limit=1_000_000)
    return root, a, b


@pytest.mark.timeout(120)
def test_close_while_threads_publish_and_subscribe(workers: Workers) -> None:
    """6 publishers, a subscriber and a stats reader; ``close()`` in the middle.

    Every publish either returned an id that is in its bus's history, or
    raised BusClosedError; every thread ends; the closed tree refuses work.
    """
    buses = _buses()
    root = buses[0]
    delivered = [0]
    root.subscribe(ANY, lambda e: delivered.__setitem__(0, delivered[0] + 1))
    returned: list[list[str]] = [[] for _ in range(3 * PUBLISHERS_PER_BUS)]
    refusals: list[BusClosedError | None] = [None] * len(returned)
    going = threading.Barrier(len(returned) + 3)

    def publisher(n: int) -> None:
        bus = buses[n % 3]
        going.wait()
        try:
            while True:
                returned[n].append(bus.publish(ET.TASK_STARTED, n))
        except BusClosedError as exc:
            refusals[n] = exc

    def subscriber() -> None:
        going.wait()
        try:
            while True:
                for bus in buses:
                    bus.subscribe(ET.TASK_COMPLETED, lambda e: None)()
        except BusClosedError:
            pass

    def reader() -> None:
        going.wait()
        while not root.closed:
            for bus in buses:
                bus.stats()
                bus.history(limit=10)

    for n in range(len(returned)):
        workers.start(publisher, n, name=f"publisher-{n}")
    workers.start(subscriber, name="subscriber")
    workers.start(reader, name="reader")
    going.wait()
    time.sleep(0.5)
    started = time.perf_counter()
    closers = Workers()
    for n in range(2):  # two threads close at once
        closers.start(root.close, name=f"closer-{n}")
    closers.join(timeout=10)
    close_time = time.perf_counter() - started
    workers.join(timeout=30)

    assert all(isinstance(r, BusClosedError) for r in refusals)
    for n, ids in enumerate(returned):
        recorded = {e.id for e in buses[n % 3].history() if e.data == n}
        assert set(ids) == recorded, f"publisher {n}: returned ids != recorded events"
    for bus in buses:
        stats = bus.stats()
        assert stats["closed"]
        assert stats["subscribers"] == {}
        assert stats["children"] == 0
        with pytest.raises(BusClosedError):
            bus.publish(ET.TASK_STARTED)
        with pytest.raises(BusClosedError):
            bus.subscribe(ET.TASK_STARTED, print)
        with pytest.raises(BusClosedError):
            bus.scope("late")
        bus.close()  # idempotent
    total = sum(len(ids) for ids in returned)
    assert total > 0
    print(
        f"\nshutdown: {len(returned)} publisher threads published {total} events, "
        f"then close() took {close_time * 1000:.1f} ms; all threads ended with "
        f"BusClosedError; {delivered[0]} deliveries"
    )


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_close_ends_async_streams_while_threads_publish(workers: Workers) -> None:
    """Streams on root and scopes end cleanly when another thread closes the root."""
    buses = _buses()
    root, a, b = buses
    streams = [
        root.stream(ANY, max_queue=100_000),
        a.stream(ET.TASK_STARTED, max_queue=100_000),
        b.stream(ANY, correlation_id="run-1", max_queue=100_000),
        root.stream(ANY, max_queue=10),  # a slow consumer: drops, but still ends
    ]
    stop = threading.Event()

    def publisher(bus: EventBus, n: int) -> None:
        try:
            while not stop.is_set():
                bus.publish(ET.TASK_STARTED, n, correlation_id="run-1")
        except BusClosedError:
            pass

    async def consume(stream: Any, slow: bool) -> list[Event[Any]]:
        got: list[Event[Any]] = []
        async for event in stream:
            got.append(event)
            if slow:
                await asyncio.sleep(0.001)
        return got

    consumers = [asyncio.create_task(consume(s, slow=i == 3)) for i, s in enumerate(streams)]
    for n, bus in enumerate(buses):
        workers.start(publisher, bus, n, name=f"publisher-{n}")
    await asyncio.sleep(0.3)
    await asyncio.to_thread(root.close)
    stop.set()
    results = await asyncio.wait_for(asyncio.gather(*consumers), timeout=20)
    await asyncio.to_thread(workers.join, 10)

    for got in results[:3]:
        assert got, "a stream received nothing"
        seqs = [e.seq for e in got]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
    assert results[3]  # the slow one got something, then ended
    for bus in buses:
        assert bus.stats()["streams"] == 0


@pytest.mark.timeout(60)
def test_close_releases_a_publisher_blocked_by_a_full_stream(workers: Workers) -> None:
    """A publisher waiting for room in a ``block`` stream returns promptly on close()."""
    bus = EventBus(name="block")
    loop = asyncio.new_event_loop()
    blocked = threading.Event()

    async def open_stream() -> Any:
        return bus.stream(ANY, max_queue=1, policy="block", block_timeout=30)

    stream = loop.run_until_complete(open_stream())  # never consumed

    def publisher() -> None:
        bus.publish(ET.TASK_STARTED, 1)  # fills the queue
        blocked.set()
        bus.publish(ET.TASK_STARTED, 2)  # waits up to 30 s for room

    workers.start(publisher, name="blocked-publisher")
    assert blocked.wait(10)
    time.sleep(0.2)
    started = time.perf_counter()
    bus.close()
    waited = workers.join(timeout=10)
    assert time.perf_counter() - started < 5, f"publisher held {waited:.1f}s after close()"
    assert stream.closed is False  # the consumer side sees the end on its next read
    loop.close()


class RacyBus(EventBus):
    """A bus on which ``close()`` (from another thread) lands right after a closed-check.

    Arm it with :meth:`close_at_next_check`: the next read of ``_closed`` by
    the arming thread starts ``close()`` in another thread and gives it up to
    half a second (it may wait for a lock the operation holds) before the
    operation goes on -- the worst interleaving for a check-then-register
    operation.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._armed_by: int | None = None
        self._closer: Workers | None = None
        super().__init__(**kwargs)

    @property
    def _closed(self) -> bool:
        value: bool = self.__dict__["_closed_value"]
        if self._armed_by == threading.get_ident():  # the check saw "open"; now close
            self._armed_by = None
            self._closer = Workers()
            self._closer.start(self.close, name="racing-close")
            with contextlib.suppress(AssertionError):  # still waiting for a lock we hold
                self._closer.join(timeout=0.5)
        return value

    @_closed.setter
    def _closed(self, value: bool) -> None:
        self.__dict__["_closed_value"] = value

    def close_at_next_check(self) -> None:
        self._armed_by = threading.get_ident()

    def finish_close(self) -> None:
        assert self._closer is not None, "the operation never checked whether the bus was closed"
        self._closer.join(timeout=10)
        assert self.closed


def _racing(operation: Callable[[RacyBus], Any]) -> tuple[RacyBus, Any]:
    bus = RacyBus(name="racy")
    bus.close_at_next_check()
    try:
        result = operation(bus)
    except BusClosedError as exc:
        result = exc
    bus.finish_close()
    return bus, result


def test_close_racing_subscribe_leaves_nothing_subscribed() -> None:
    """subscribe() racing close(): BusClosedError, or an inactive token and no subscriber."""
    bus, result = _racing(lambda b: b.subscribe(ET.TASK_STARTED, print))
    assert isinstance(result, BusClosedError) or not result.active
    assert bus.subscriber_count() == 0


def test_close_racing_add_middleware_leaves_no_middleware() -> None:
    """add_middleware() racing close(): BusClosedError, or no middleware left registered."""
    bus, result = _racing(lambda b: b.add_middleware(lambda e: e))
    assert isinstance(result, BusClosedError) or not result.active
    assert bus.stats()["middleware"] == 0


def test_close_racing_scope_leaves_no_open_child() -> None:
    """scope() racing close(): BusClosedError, or the new scope is closed too."""
    _bus, result = _racing(lambda b: b.scope("late"))
    assert isinstance(result, BusClosedError) or result.closed


@pytest.mark.timeout(60)
def test_close_racing_stream_leaves_no_hanging_stream(workers: Workers) -> None:
    """stream() racing close(): BusClosedError, or a stream that ends at once (no hang)."""
    outcome: list[Any] = []

    async def main() -> None:
        bus = RacyBus(name="racy")
        bus.close_at_next_check()
        try:
            stream = bus.stream(ANY)
        except BusClosedError as exc:
            outcome.append(exc)
        else:
            outcome.append([e async for e in stream])  # must end: the bus is closed
        bus.finish_close()
        assert bus.stats()["streams"] == 0

    workers.start(asyncio.run, main(), name="stream-opener")
    workers.join(timeout=10)
    assert isinstance(outcome[0], BusClosedError) or outcome[0] == []

"""Tests for async streams: bounded queues, policies, terminal events, replay, cleanup."""

from __future__ import annotations

import asyncio
import enum
import gc
import math
import threading
import time
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_events import ANY, Event, EventBus, EventStream, EventType, InvalidHandlerError
from atlas_events.exceptions import StreamClosedError

ET = EventType


class Run(enum.Enum):
    """A user's run lifecycle, with terminal members."""

    STEP = "step"
    FINISHED = "finished"
    ERROR = "error"


def make_bus(**kw: Any) -> EventBus:
    """A bus whose Run.FINISHED / Run.ERROR are terminal."""
    return EventBus(terminal_types=(Run.FINISHED, Run.ERROR), **kw)


async def drain(stream: EventStream, n: int, limit: float = 10.0) -> list[Event[Any]]:
    """Read n events from the stream (failing after `limit` seconds)."""
    out: list[Event[Any]] = []
    async with asyncio.timeout(limit):
        async for ev in stream:
            out.append(ev)
            if len(out) == n:
                break
    return out


# ------------------------------------------------------------------ basics


@pytest.mark.asyncio
async def test_stream_receives_matching_events(bus: EventBus) -> None:
    """A typed stream gets only its type; an ANY stream gets all, in seq order."""
    typed = bus.stream(ET.TASK_STARTED)
    every = bus.stream()
    bus.publish(ET.TASK_STARTED, 1)
    bus.publish(ET.TASK_COMPLETED, 2)
    bus.publish(ET.TASK_STARTED, 3)
    assert [e.data for e in await drain(typed, 2)] == [1, 3]
    assert [e.seq for e in await drain(every, 3)] == [1, 2, 3]
    assert bus.stats()["streams"] == 2
    typed.close()
    every.close()
    assert bus.stats()["streams"] == 0


@pytest.mark.asyncio
async def test_stream_filter_and_get(bus: EventBus) -> None:
    """filter= applies to streams; get() and get_nowait() read single events."""
    s = bus.stream(filter=lambda e: e.data % 2 == 1)
    for i in range(4):
        bus.publish(ET.TASK_STARTED, i)
    assert (await s.get()).data == 1
    nxt = s.get_nowait()
    assert nxt is not None
    assert nxt.data == 3
    assert s.get_nowait() is None
    s.close()
    with pytest.raises(StreamClosedError):
        await s.get()


# ---------------------------------------------------------------- policies


@pytest.mark.asyncio
async def test_drop_oldest_counts_exactly(bus: EventBus) -> None:
    """A stream that is not read keeps the newest max_queue events; drops are exact."""
    s = bus.stream(max_queue=10)
    for i in range(25):
        bus.publish(ET.TASK_STARTED, i)
    assert s.dropped == 15
    assert s.depth == 10
    assert [e.data for e in await drain(s, 10)] == list(range(15, 25))
    stats = bus.stats()
    assert stats["stream_events_dropped"] == 15
    (sink,) = stats["sinks"]
    assert sink["policy"] == "drop_oldest"
    assert sink["capacity"] == 10
    assert sink["dropped"] == 15
    s.close()


@pytest.mark.asyncio
async def test_drop_newest_keeps_the_oldest(bus: EventBus) -> None:
    """drop_newest discards arrivals while full."""
    s = bus.stream(max_queue=3, policy="drop_newest")
    for i in range(6):
        bus.publish(ET.TASK_STARTED, i)
    assert [e.data for e in await drain(s, 3)] == [0, 1, 2]
    assert s.dropped == 3
    s.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_terminal_events_always_arrive(policy: str) -> None:
    """A terminal event gets into a full queue by evicting a non-terminal one."""
    bus = make_bus()
    s = bus.stream(max_queue=3, policy=policy)  # type: ignore[arg-type]
    for i in range(5):
        bus.publish(Run.STEP, i)
    bus.publish(Run.FINISHED, "done")
    got = await drain(s, 3)
    assert got[-1].type is Run.FINISHED
    assert s.dropped == 3
    # A queue full of terminal events still takes another terminal one (over capacity).
    s2 = bus.stream(max_queue=2)
    for _ in range(3):
        bus.publish(ET.SYSTEM_SHUTDOWN)
    bus.publish(Run.STEP, "dropped")
    assert [e.type for e in await drain(s2, 3)] == [ET.SYSTEM_SHUTDOWN] * 3
    assert s2.dropped == 1
    bus.close()


@pytest.mark.asyncio
async def test_block_policy_holds_a_publisher_thread(bus: EventBus) -> None:
    """With policy='block', a publisher in another thread waits for the consumer."""
    s = bus.stream(max_queue=2, policy="block", block_timeout=5)
    published = threading.Event()

    def producer() -> None:
        for i in range(6):
            bus.publish(ET.TASK_STARTED, i)
        published.set()

    t = threading.Thread(target=producer)
    t.start()
    await asyncio.sleep(0.2)
    assert not published.is_set()  # blocked on the full queue
    got = await drain(s, 6)
    t.join(5)
    assert published.is_set()
    assert [e.data for e in got] == list(range(6))
    assert s.dropped == 0
    s.close()


@pytest.mark.asyncio
async def test_block_policy_times_out_by_dropping_oldest(bus: EventBus) -> None:
    """After block_timeout the publisher continues and the oldest overflow is dropped."""
    s = bus.stream(max_queue=1, policy="block", block_timeout=0.05)

    def producer() -> None:
        for i in range(3):
            bus.publish(ET.TASK_STARTED, i)

    t = threading.Thread(target=producer)
    t0 = time.monotonic()
    t.start()
    await asyncio.to_thread(t.join, 5)
    assert time.monotonic() - t0 < 2
    assert s.dropped == 2
    assert [e.data for e in await drain(s, 1)] == [2]
    s.close()


@pytest.mark.asyncio
async def test_block_policy_on_the_consumer_loop_never_deadlocks(bus: EventBus) -> None:
    """Publishing from the consumer's own loop does not wait (it would deadlock): it drops."""
    s = bus.stream(max_queue=2, policy="block", block_timeout=10)
    t0 = time.monotonic()
    for i in range(5):
        bus.publish(ET.TASK_STARTED, i)
    assert time.monotonic() - t0 < 1
    assert [e.data for e in await drain(s, 2)] == [3, 4]
    assert s.dropped == 3
    s.close()


# ------------------------------------------------------------ concurrency


@pytest.mark.asyncio
async def test_four_threads_into_three_streams(bus: EventBus) -> None:
    """4 publisher threads, 3 keeping-up streams: every event once, per-thread order."""
    per_thread = 2000
    streams = [bus.stream(max_queue=10 * per_thread) for _ in range(3)]
    errors: list[BaseException] = []

    def publisher(t: int) -> None:
        try:
            for i in range(per_thread):
                bus.publish(ET.TASK_STARTED, (t, i))
        except BaseException as exc:  # re-raised in the test
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    results = await asyncio.gather(*(drain(s, 4 * per_thread, 30) for s in streams))
    for th in threads:
        th.join(10)
    if errors:
        raise errors[0]
    for got in results:
        seqs = [e.seq for e in got]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        for t in range(4):
            assert [e.data[1] for e in got if e.data[0] == t] == list(range(per_thread))
    for s in streams:
        assert s.dropped == 0
        s.close()


@pytest.mark.asyncio
async def test_slow_consumer_drops_while_fast_one_keeps_everything(bus: EventBus) -> None:
    """A sleeping consumer loses its oldest events (counted exactly); the fast one loses none."""
    n = 3000
    fast = bus.stream(max_queue=n)
    slow = bus.stream(max_queue=50)
    slow_got: list[int] = []

    async def slow_reader() -> None:
        async for ev in slow:
            slow_got.append(ev.data)
            await asyncio.sleep(0.002)
            if ev.data == n - 1:
                break

    reader = asyncio.create_task(slow_reader())
    publisher = threading.Thread(target=lambda: [bus.publish(ET.TASK_STARTED, i) for i in range(n)])
    publisher.start()
    fast_got = await drain(fast, n, 30)
    await asyncio.to_thread(publisher.join, 10)
    await asyncio.wait_for(reader, 30)
    assert [e.data for e in fast_got] == list(range(n))
    assert fast.dropped == 0
    assert slow.dropped > 0
    assert len(slow_got) + slow.dropped == n
    assert slow_got == sorted(slow_got)
    assert slow_got[-1] == n - 1
    fast.close()
    slow.close()


@pytest.mark.asyncio
async def test_slow_consumer_does_not_slow_the_publisher(bus: EventBus) -> None:
    """Publishing into a stream nobody reads costs about the same as into no stream."""
    bus.stream(max_queue=10)  # never read
    t0 = time.perf_counter()
    for i in range(20_000):
        bus.publish(ET.TASK_STARTED, i)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5  # a stall would block here; the real figure is in benchmarks/


# ------------------------------------------------------------------ replay


@pytest.mark.asyncio
async def test_replay_all_then_live_without_gap_or_duplicate(bus: EventBus) -> None:
    """replay='all' delivers history, then live events, seamlessly."""
    for i in range(5):
        bus.publish(ET.TASK_STARTED, i)
    s = bus.stream(replay="all")
    assert s.replay_count == 5
    for i in range(5, 8):
        bus.publish(ET.TASK_STARTED, i)
    assert [e.data for e in await drain(s, 8)] == list(range(8))
    s.close()


@pytest.mark.asyncio
async def test_replay_last_n_and_since_seq(bus: EventBus) -> None:
    """replay=N keeps the last N matches; since_seq resumes after a seq."""
    for i in range(10):
        bus.publish(ET.TASK_STARTED if i % 2 else ET.TASK_COMPLETED, i)
    s = bus.stream(ET.TASK_STARTED, replay=2)
    assert [e.data for e in await drain(s, 2)] == [7, 9]
    r = bus.stream(since_seq=7)
    assert [e.seq for e in await drain(r, 3)] == [8, 9, 10]
    assert r.gap is None
    s.close()
    r.close()


@pytest.mark.asyncio
async def test_since_seq_reports_a_gap_when_history_is_gone() -> None:
    """Resuming from a seq older than history reports exactly what is missing."""
    bus = EventBus(history_limit=3)
    for i in range(10):
        bus.publish(ET.TASK_STARTED, i)
    s = bus.stream(since_seq=2)
    assert s.gap == (3, 7)
    assert [e.seq for e in await drain(s, 3)] == [8, 9, 10]
    s.close()


@pytest.mark.asyncio
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=st.integers(0, 200), during=st.integers(0, 400), threads=st.integers(1, 3))
async def test_replay_seam_under_concurrent_publishing(
    before: int, during: int, threads: int
) -> None:
    """Attaching with replay while threads publish: every seq exactly once, in order."""
    bus = EventBus(history_limit=10_000)
    for i in range(before):
        bus.publish(ET.TASK_STARTED, i)
    start = threading.Barrier(threads + 1)

    def publisher() -> None:
        start.wait()
        for i in range(during):
            bus.publish(ET.TASK_STARTED, i)

    workers = [threading.Thread(target=publisher) for _ in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    s = bus.stream(replay="all", max_queue=100_000)

    def join_workers() -> None:
        for w in workers:
            w.join(10)

    await asyncio.to_thread(join_workers)
    total = before + during * threads
    got = await drain(s, total) if total else []
    assert [e.seq for e in got] == list(range(1, total + 1))
    bus.close()


@pytest.mark.asyncio
async def test_run_resume_reports_only_real_gaps() -> None:
    """A run that started after since_seq has no gap; a trimmed run reports what it lost."""
    bus = EventBus(run_history_limit=3)
    for i in range(10):
        bus.publish(ET.TASK_STARTED, i)  # seq 1..10, no run
    for i in range(2):
        bus.publish(ET.TASK_STARTED, i, correlation_id="late")  # seq 11, 12
    fresh = bus.stream(correlation_id="late", since_seq=5)
    assert fresh.gap is None
    assert [e.seq for e in await drain(fresh, 2)] == [11, 12]
    for i in range(4):
        bus.publish(ET.TASK_STARTED, i, correlation_id="long")  # seq 13..16, keeps 14..16
    trimmed = bus.stream(correlation_id="long", since_seq=0)
    assert trimmed.gap == (1, 13)
    assert [e.seq for e in await drain(trimmed, 3)] == [14, 15, 16]
    bus.close()


# -------------------------------------------------------------- correlation


@pytest.mark.asyncio
async def test_correlated_stream_ends_after_its_terminal_event() -> None:
    """A correlation stream replays its run and stops after the run's terminal event."""
    bus = make_bus()
    bus.publish(Run.STEP, 0, correlation_id="a")
    bus.publish(Run.STEP, "other", correlation_id="b")
    s = bus.stream(correlation_id="a", replay=True)
    bus.publish(Run.STEP, 1, correlation_id="a")
    bus.publish(Run.FINISHED, 2, correlation_id="a")
    bus.publish(Run.STEP, 3, correlation_id="a")
    got = [e.data async for e in s]
    assert got == [0, 1, 2]
    assert s.closed
    assert bus.stats()["streams"] == 0
    bus.close()


# --------------------------------------------------------------- cleanup


@pytest.mark.asyncio
async def test_bus_close_ends_streams_cleanly(bus: EventBus) -> None:
    """close() ends every stream: queued events are read, then iteration stops."""
    s = bus.stream()
    waiting = bus.stream()
    reader = asyncio.create_task(drain(waiting, 100))
    await asyncio.sleep(0.01)
    bus.publish(ET.TASK_STARTED, 1)
    bus.close()
    assert [e.data for e in [ev async for ev in s]] == [1]
    assert [e.data for e in await asyncio.wait_for(reader, 5)] == [1]


@pytest.mark.asyncio
async def test_cancelling_a_consumer_in_async_with_unregisters_its_queue(bus: EventBus) -> None:
    """A cancelled consumer task leaves `async with`: the stream count returns to zero."""

    async def consume() -> None:
        async with bus.stream() as events:
            async for _ in events:
                pass

    tasks = [asyncio.create_task(consume()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert bus.stats()["streams"] == 5
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert bus.stats()["streams"] == 0


# ------------------------------------------------------- cancelled waits


@pytest.mark.asyncio
async def test_a_timed_out_get_ends_only_that_wait(bus: EventBus) -> None:
    """asyncio.timeout() around get(): the stream stays attached and gets the next event."""
    s = bus.stream()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await s.get()
    assert not s.closed
    assert bus.stats()["streams"] == 1
    bus.publish(ET.TASK_STARTED, "after the timeout")
    assert (await asyncio.wait_for(s.get(), 5)).data == "after the timeout"


@pytest.mark.asyncio
async def test_a_cancelled_consumer_task_leaves_the_stream_to_the_next_reader(
    bus: EventBus,
) -> None:
    """Cancelling the task blocked in get() (or `async for`) loses no event."""
    s = bus.stream()

    async def read_all() -> None:
        async for _ in s:
            pass

    task = asyncio.create_task(read_all())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    bus.publish(ET.TASK_STARTED, 1)
    bus.publish(ET.TASK_STARTED, 2)
    assert [e.data for e in await drain(s, 2)] == [1, 2]


@pytest.mark.asyncio
async def test_an_event_arriving_with_the_cancellation_is_not_lost(bus: EventBus) -> None:
    """The wake-up and the cancel land in one loop iteration: the event stays queued."""
    s = bus.stream()
    task = asyncio.create_task(s.get())
    await asyncio.sleep(0.01)  # parked on its waiter
    bus.publish(ET.TASK_STARTED, "raced")  # resolves the waiter...
    task.cancel()  # ...and the task is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s.depth == 1
    assert (await s.get()).data == "raced"


@pytest.mark.asyncio
async def test_repeated_wait_for_timeouts_under_a_publisher_thread_lose_nothing(
    bus: EventBus,
) -> None:
    """Many short wait_for(get()) calls while a thread publishes: every event once, in order."""
    s = bus.stream(max_queue=10_000)
    n = 2000

    def publish() -> None:
        for i in range(n):
            bus.publish(ET.TASK_STARTED, i)
            if i % 100 == 0:
                time.sleep(0.001)

    worker = threading.Thread(target=publish)
    worker.start()
    got: list[int] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        try:
            got.append((await asyncio.wait_for(s.get(), 0.0005)).data)
        except TimeoutError:
            continue
    worker.join(10)
    assert got == list(range(n))
    assert s.dropped == 0


# ----------------------------------------------------- per-run resume gaps


@pytest.mark.asyncio
async def test_resuming_a_run_evicted_whole_reports_the_gap() -> None:
    """max_runs evicted the run: a resume after its first event hears of the lost ones."""
    bus = EventBus(max_runs=2)
    for i in range(3):
        bus.publish(ET.TASK_STARTED, i, correlation_id="r1")  # seq 1..3
    bus.publish(ET.TASK_STARTED, correlation_id="r2")  # seq 4
    bus.publish(ET.TASK_STARTED, correlation_id="r3")  # seq 5: evicts r1
    assert bus.history(correlation_id="r1") == []
    resumed = bus.stream(correlation_id="r1", since_seq=1)
    assert resumed.gap == (2, 3)
    bus.publish(ET.TASK_STARTED, "back", correlation_id="r1")  # r1 starts again (seq 6)
    again = bus.stream(correlation_id="r1", since_seq=1, replay=True)
    assert again.gap == (2, 3)
    assert [e.data for e in await drain(again, 1)] == ["back"]
    up_to_date = bus.stream(correlation_id="r1", since_seq=3)
    assert up_to_date.gap is None
    bus.close()


@pytest.mark.asyncio
async def test_resuming_a_run_after_clear_history_reports_the_gap() -> None:
    """clear_history() forgets a run's events: a resume from before them has a gap."""
    bus = EventBus()
    bus.publish(ET.TASK_STARTED, correlation_id="r1")
    bus.publish(ET.TASK_STARTED, correlation_id="r1")
    bus.clear_history()
    assert bus.stream(correlation_id="r1", since_seq=0).gap == (1, 2)
    assert bus.stream(correlation_id="r1", since_seq=2).gap is None
    bus.close()


@pytest.mark.asyncio
async def test_forgotten_run_records_still_report_a_possible_gap() -> None:
    """Beyond the bound on remembered runs, an unknown run hears of a possible gap."""
    from atlas_events import _history

    bus = EventBus(max_runs=1)
    limit = max(_history._MAX_LOST_RUNS, 2)
    for i in range(limit + 3):
        bus.publish(ET.TASK_STARTED, correlation_id=f"run-{i}")
    gap = bus.stream(correlation_id="run-0", since_seq=0).gap
    assert gap is not None
    assert gap[0] == 1
    bus.close()


# --------------------------------------------- eviction and finalizers


class Announcer:
    """A payload whose finalizer publishes (a component announcing it was dropped)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def __del__(self) -> None:
        self.bus.publish(ET.AGENT_STOPPED, "bye")


def test_drop_oldest_eviction_of_a_last_reference_does_not_deadlock() -> None:
    """The stream queue evicts a payload's last reference: its finalizer publishes after unlock."""
    bus = EventBus(history_limit=0)

    async def open_stream() -> EventStream:
        return bus.stream(max_queue=1)

    loop = asyncio.new_event_loop()
    try:
        s = loop.run_until_complete(open_stream())
        done = threading.Event()

        def publisher() -> None:
            bus.publish(ET.AGENT_STARTED, Announcer(bus))
            bus.publish(ET.TASK_STARTED, 1)  # evicts the Announcer event
            done.set()

        worker = threading.Thread(target=publisher, daemon=True)
        worker.start()
        assert done.wait(10), "the publisher deadlocked"
        assert [e.type for e in bus.history()] == []
        last = s.get_nowait()
        assert last is not None
        assert last.type is ET.AGENT_STOPPED
        assert last.seq == 3
        s.close()
    finally:
        loop.close()


@pytest.mark.parametrize("policy", ["drop_oldest", "block"])
def test_streams_see_seq_order_when_evictions_publish(policy: str) -> None:
    """History, run-history and stream evictions that publish keep every stream in seq order."""
    bus = EventBus(history_limit=2, run_history_limit=1, max_runs=1)

    async def open_streams() -> list[EventStream]:
        return [
            bus.stream(max_queue=2, policy=policy, block_timeout=0.01),  # type: ignore[arg-type]
            bus.stream(filter=lambda e: e.type is not ET.AGENT_STARTED),
        ]

    loop = asyncio.new_event_loop()
    try:
        streams = loop.run_until_complete(open_streams())
        for i in range(30):
            bus.publish(ET.AGENT_STARTED, Announcer(bus), correlation_id=f"r{i % 3}")
            bus.publish(ET.TASK_STARTED, i)
        bus.clear_history()
        for s in streams:
            seqs = []
            while (ev := s.get_nowait()) is not None:
                seqs.append(ev.seq)
            assert seqs == sorted(seqs)
            assert len(seqs) == len(set(seqs))
            s.close()
    finally:
        loop.close()


@pytest.mark.asyncio
async def test_abandoned_stream_is_detached_when_collected(bus: EventBus) -> None:
    """A stream object dropped without close() detaches once garbage-collected."""
    bus.stream()
    gc.collect()
    assert bus.stats()["streams"] == 0


@pytest.mark.asyncio
async def test_async_with_detaches(bus: EventBus) -> None:
    """Leaving `async with` closes the stream."""
    async with bus.stream() as s:
        bus.publish(ET.TASK_STARTED)
        await s.get()
    assert s.closed
    assert bus.stats()["streams"] == 0
    assert "ended" in repr(s)


# ----------------------------------------------------------------- bad input


@pytest.mark.asyncio
async def test_stream_bad_input(bus: EventBus) -> None:
    """Unknown policy, bad max_queue / replay / since_seq and coroutine filters are refused."""
    with pytest.raises(ValueError, match="unknown policy 'fastest'"):
        bus.stream(policy="fastest")  # type: ignore[arg-type]
    for bad_size in (0, -1):
        with pytest.raises(ValueError, match="max_queue"):
            bus.stream(max_queue=bad_size)
    for wrong_type in (1.5, True, "10"):
        with pytest.raises(TypeError, match="max_queue"):
            bus.stream(max_queue=wrong_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="replay"):
        bus.stream(replay="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="replay"):
        bus.stream(replay=-1)
    with pytest.raises(ValueError, match="since_seq"):
        bus.stream(since_seq=-3)
    with pytest.raises(TypeError, match="since_seq"):
        bus.stream(since_seq=2.0)  # type: ignore[arg-type]
    for bad_timeout in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="block_timeout"):
            bus.stream(policy="block", block_timeout=bad_timeout)
    with pytest.raises(TypeError, match="block_timeout"):
        bus.stream(policy="block", block_timeout="1")  # type: ignore[arg-type]

    async def afilter(e: Event[Any]) -> bool:
        return True

    with pytest.raises(InvalidHandlerError, match="coroutine"):
        bus.stream(filter=afilter)  # type: ignore[arg-type]
    assert bus.stats()["streams"] == 0


def test_stream_needs_a_running_loop(bus: EventBus) -> None:
    """bus.stream() outside async code is a clear error."""
    with pytest.raises(RuntimeError, match="running event loop"):
        bus.stream(ANY)


# ------------------------------------------------- fan-out into many streams


@pytest.mark.asyncio
async def test_block_fan_out_from_a_thread_loses_nothing_and_stays_bounded(
    bus: EventBus,
) -> None:
    """10 block streams fed by a publisher thread: every event, in order, queues bounded."""
    n, cap = 3000, 50
    streams = [bus.stream(max_queue=cap, policy="block", block_timeout=30) for _ in range(10)]
    deepest = [0]

    def produce() -> None:
        for i in range(n):
            bus.publish(ET.TASK_STARTED, i)
            deepest[0] = max(deepest[0], *(s.depth for s in streams))

    async def consume(s: EventStream) -> list[int]:
        got: list[int] = []
        async for ev in s:
            got.append(ev.data)
            if len(got) % 97 == 0:
                await asyncio.sleep(0)  # let the others run: the publisher must wait for room
            if len(got) == n:
                break
        return got

    worker = threading.Thread(target=produce)
    worker.start()
    results = await asyncio.wait_for(asyncio.gather(*(consume(s) for s in streams)), 120)
    await asyncio.to_thread(worker.join, 30)
    assert all(r == list(range(n)) for r in results)
    assert sum(s.dropped for s in streams) == 0
    assert deepest[0] <= cap  # backpressure: never more than max_queue queued


@pytest.mark.asyncio
async def test_parked_consumers_of_one_loop_are_woken_in_one_hop(bus: EventBus) -> None:
    """A publish reaching N parked consumers schedules one loop callback, not N."""
    streams = [bus.stream() for _ in range(8)]
    readers = [asyncio.create_task(s.get()) for s in streams]
    await asyncio.sleep(0.01)  # all parked
    loop = asyncio.get_running_loop()
    calls: list[Any] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(callback)
        return original(callback, *args, **kwargs)

    cast(Any, loop).call_soon_threadsafe = counting
    try:
        worker = threading.Thread(target=bus.publish, args=(ET.TASK_STARTED, "x"))
        worker.start()
        worker.join(10)
        got = await asyncio.wait_for(asyncio.gather(*readers), 10)
    finally:
        del loop.call_soon_threadsafe
    assert [e.data for e in got] == ["x"] * 8
    assert len(calls) == 1


def test_a_wake_for_a_closed_loop_is_harmless() -> None:
    """A publisher waking a consumer whose loop has closed neither raises nor hangs."""
    bus = EventBus()
    loop = asyncio.new_event_loop()

    async def park() -> tuple[EventStream, asyncio.Task[Any]]:
        s = bus.stream()
        task = asyncio.create_task(s.get())
        await asyncio.sleep(0.01)  # parked: the stream holds a waiter
        return s, task

    stream, task = loop.run_until_complete(park())
    loop.close()  # closed with the consumer still parked
    bus.publish(ET.TASK_STARTED)
    bus.publish(ET.TASK_STARTED)
    assert stream.depth == 2
    assert not task.done()
    bus.close()


@pytest.mark.asyncio
async def test_run_stream_without_per_run_history_reads_the_main_history() -> None:
    """max_runs=0: a run's replay comes from the main history, and its gaps are reported."""
    bus = EventBus(history_limit=3, max_runs=0)
    for i in range(5):
        bus.publish(ET.TASK_STARTED, i, correlation_id="r1")  # seq 1..5, keeps 3..5
    s = bus.stream(correlation_id="r1", since_seq=1, replay=True)
    assert s.gap == (2, 2)
    assert [e.seq for e in await drain(s, 3)] == [3, 4, 5]
    bus.close()


def test_a_loop_without_weak_references_gets_its_own_waker() -> None:
    """Loop classes that cannot be weakly referenced still get a working waker."""
    from atlas_events._streams import _LoopWaker, _waker_of

    class NoWeakLoop:  # stands in for a compiled loop class without __weakref__
        __slots__ = ()

    loop: Any = NoWeakLoop()
    first, second = _waker_of(loop), _waker_of(loop)
    assert isinstance(first, _LoopWaker)
    assert first is not second


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [1, 1.5, math.nan, True, b"x", ["s"]])
async def test_stream_name_must_be_a_str(bad: object) -> None:
    """``stream(name=)`` is a label: a non-str raises ``TypeError`` naming it; nothing attached."""
    bus = EventBus(name="named")
    with pytest.raises(TypeError, match="name"):
        bus.stream(name=bad)  # type: ignore[arg-type]
    assert bus.stats()["streams"] == 0
    bus.publish(EventType.TASK_STARTED)
    bus.close()

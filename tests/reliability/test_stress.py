"""Thread stress: many publishers, registry churn and a re-publishing handler.

8 threads publish 20,000 events each, spread over a root bus and two nested
scopes (``root -> a -> a/b``), while 2 more threads subscribe and
unsubscribe handlers (and add / remove a middleware) in a loop, a handler on
scope ``a`` re-publishes, and a monitor thread samples history and stats.
Every subscriber attached for the whole run must see every event meant for
it exactly once, and each publishing thread's events in that thread's order.
"""

from __future__ import annotations

import enum
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import pytest

from atlas_events import ANY, Event, EventBus, EventType

from .conftest import Workers

ET = EventType
THREADS = 8
PER_THREAD = 20_000
CHURNERS = 2
REPUBLISH_EVERY = 50
HISTORY_LIMIT = 5_000
DEADLINE = 120.0  # seconds for the whole run before the test calls it a deadlock

Key = tuple[enum.Enum, int, int]  # (type, publishing thread, its k-th publish)


class Recorder:
    """A whole-run subscriber: appends ``(type, thread, k)`` (``list.append`` is atomic)."""

    def __init__(self) -> None:
        self.seen: list[Key] = []

    def on_event(self, event: Event[Any]) -> None:
        i, k = cast("tuple[int, int]", event.data)
        self.seen.append((event.type, i, k))


class ChurnComponent:
    """A short-lived component whose bound method is subscribed (weakly) and dropped."""

    calls = 0

    def on_event(self, event: Event[Any]) -> None:
        ChurnComponent.calls += 1


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every 0.5 ms instead of 5 ms: more interleavings per second."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _bus_for(i: int, k: int) -> int:
    """Which bus (0 root, 1 a, 2 a/b) thread ``i`` publishes its ``k``-th event on."""
    return (i + k) % 3


def _expected() -> dict[str, set[Key]]:
    """The keys each whole-run subscriber must see (exactly once each)."""
    started: dict[int, set[Key]] = {
        idx: {
            (ET.TASK_STARTED, i, k)
            for i in range(THREADS)
            for k in range(PER_THREAD)
            if _bus_for(i, k) == idx
        }
        for idx in range(3)
    }
    # The re-publisher on scope a sees events of a and a/b; it re-publishes on
    # a/b, so TASK_COMPLETED reaches a/b, a and root.
    completed: set[Key] = {
        (ET.TASK_COMPLETED, i, k)
        for (_, i, k) in started[1] | started[2]
        if k % REPUBLISH_EVERY == 0
    }
    everything = started[0] | started[1] | started[2]
    return {
        "root_any": everything | completed,
        "root_started_method": everything,
        "root_completed": completed,
        "a_started_even_threads": {key for key in started[1] | started[2] if key[1] % 2 == 0},
        "b_any": started[2] | completed,
    }


def _check_order(name: str, seen: list[Key]) -> None:
    """Each publishing thread's events arrive in the order that thread published them."""
    last: dict[tuple[enum.Enum, int], int] = {}
    for t, i, k in seen:
        prev = last.get((t, i), -1)
        assert k > prev, f"{name}: thread {i} {t!r} #{k} arrived after #{prev}"
        last[(t, i)] = k


def _check_history(bus: EventBus) -> None:
    """History is in strictly increasing, gap-free seq order and within its limit."""
    hist = bus.history()
    stats = bus.stats()
    assert len(hist) <= bus.history_limit
    assert len(hist) == min(stats["published"], bus.history_limit)
    seqs = [e.seq for e in hist]
    assert seqs == list(range(stats["published"] - len(hist) + 1, stats["published"] + 1))


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE + 60)
@pytest.mark.usefixtures("fast_switching")
def test_publish_subscribe_churn_and_republish_lose_and_duplicate_nothing(
    workers: Workers,
) -> None:
    """8 x 20,000 publishes over root + 2 nested scopes with churn: 0 lost, 0 duplicated.

    Also: per-thread order for every whole-run subscriber, history in seq
    order and within its limit (sampled during the run and checked after),
    exact ``stats()`` counters, and the whole run finishing within its own
    deadline (a deadlock fails the test with the stuck stacks).
    """
    root = EventBus(history_limit=HISTORY_LIMIT, name="stress")
    a = root.scope("a", history_limit=HISTORY_LIMIT)
    b = a.scope("b", history_limit=HISTORY_LIMIT)
    buses = (root, a, b)

    rec = {name: Recorder() for name in _expected()}
    root.subscribe(ANY, rec["root_any"].on_event, weak=False)
    root_method = Recorder()  # subscribed by bound method: weak by default, kept alive here
    rec["root_started_method"] = root_method
    root.subscribe(ET.TASK_STARTED, root_method.on_event)
    root.subscribe(ET.TASK_COMPLETED, rec["root_completed"].on_event, weak=False)
    a.subscribe(
        ET.TASK_STARTED,
        rec["a_started_even_threads"].on_event,
        weak=False,
        filter=lambda e: cast("tuple[int, int]", e.data)[0] % 2 == 0,
    )
    b.subscribe(ANY, rec["b_any"].on_event, weak=False)

    def republish(event: Event[Any]) -> None:
        i, k = cast("tuple[int, int]", event.data)
        if k % REPUBLISH_EVERY == 0:
            b.publish(ET.TASK_COMPLETED, (i, k), source=f"t{i}")

    a.subscribe(ET.TASK_STARTED, republish)

    publishers_done = threading.Event()
    ready = threading.Barrier(THREADS + CHURNERS + 1)
    churn_cycles = [0] * CHURNERS
    samples = [0]

    def publisher(i: int) -> None:
        ready.wait()
        for k in range(PER_THREAD):
            buses[_bus_for(i, k)].publish(ET.TASK_STARTED, (i, k), source=f"t{i}")
            if workers.stop.is_set():
                return

    def churner(c: int) -> None:
        rng = random.Random(c)
        types = (ANY, ET.TASK_STARTED, ET.TASK_COMPLETED, ET.AGENT_STARTED)
        ready.wait()
        while not publishers_done.is_set() and not workers.stop.is_set():
            bus = rng.choice(buses)
            et = rng.choice(types)
            kind = rng.randrange(5)
            comp = ChurnComponent()
            if kind == 0:
                token = bus.subscribe(et, lambda e: None)
            elif kind == 1:
                token = bus.subscribe(et, comp.on_event)  # weak: dies with comp
            elif kind == 2:
                token = bus.subscribe(et, lambda e: None, once=True)
            elif kind == 3:
                token = bus.subscribe(et, lambda e: None, filter=lambda e: e.data is None)
            else:
                token = bus.add_middleware(lambda e: e)
            time.sleep(0)
            first = token()
            assert first in (True, False)  # a once handler may have unsubscribed itself
            if kind != 2:
                assert first is True, f"token of kind {kind} was already inactive"
            assert token() is False
            del comp
            churn_cycles[c] += 1

    def monitor() -> None:
        while not publishers_done.is_set() and not workers.stop.is_set():
            for bus in buses:
                hist = bus.history()
                assert len(hist) <= bus.history_limit
                seqs = [e.seq for e in hist]
                assert seqs == sorted(seqs)
                assert len(set(seqs)) == len(seqs)
                assert bus.stats()["history_size"] <= bus.history_limit
            samples[0] += 1
            time.sleep(0.01)

    started = time.perf_counter()
    pub_group = Workers()
    for i in range(THREADS):
        pub_group.start(publisher, i, name=f"publisher-{i}")
    for c in range(CHURNERS):
        workers.start(churner, c, name=f"churner-{c}")
    workers.start(monitor, name="monitor")
    ready.wait()
    try:
        pub_group.join(timeout=DEADLINE)
    finally:
        publishers_done.set()
        workers.join(timeout=30)
    elapsed = time.perf_counter() - started

    expected = _expected()
    for name, recorder in rec.items():
        counts = Counter(recorder.seen)
        dupes = [key for key, n in counts.items() if n > 1]
        assert not dupes, f"{name}: {len(dupes)} duplicated, e.g. {dupes[:3]}"
        missing = expected[name] - counts.keys()
        extra = counts.keys() - expected[name]
        assert not missing, f"{name}: {len(missing)} lost, e.g. {sorted(missing)[:3]}"
        assert not extra, f"{name}: {len(extra)} unexpected, e.g. {sorted(extra)[:3]}"
        _check_order(name, recorder.seen)

    n_started = [
        len({k for k in expected["root_started_method"] if _bus_for(k[1], k[2]) == idx})
        for idx in range(3)
    ]
    n_completed = len(expected["root_completed"])
    assert [bus.stats()["published"] for bus in buses] == [
        sum(n_started) + n_completed,
        n_started[1] + n_started[2] + n_completed,
        n_started[2] + n_completed,
    ]
    for bus in buses:
        _check_history(bus)
        assert bus.stats()["handler_errors"] == 0
        assert bus.stats()["middleware"] == 0
    assert root.stats()["subscribers"] == {
        "ANY": 1,
        "EventType.TASK_STARTED": 1,
        "EventType.TASK_COMPLETED": 1,
    }
    assert a.stats()["subscribers"] == {"EventType.TASK_STARTED": 2}
    assert b.stats()["subscribers"] == {"ANY": 1}
    assert samples[0] > 0
    assert all(n > 0 for n in churn_cycles)

    total_events = sum(len(r.seen) for r in rec.values())
    print(
        f"\nstress: {THREADS} publisher threads x {PER_THREAD} publishes "
        f"({THREADS * PER_THREAD} events + {n_completed} re-published) over 3 buses, "
        f"{CHURNERS} churn threads ({sum(churn_cycles)} subscribe/unsubscribe cycles), "
        f"{samples[0]} monitor samples; {total_events} deliveries checked; "
        f"0 lost, 0 duplicated; {elapsed:.1f}s"
    )

"""Finalizers that call back into the bus while it holds a lock, and GC run anywhere.

A finalizer (``__del__``, a weakref callback) runs when the garbage
collector decides, or when the bus drops a last reference: history
eviction, a route rebuild, ``clear_history``. Whatever it does on the bus
-- publish, subscribe, unsubscribe, close -- must neither deadlock nor
break ``seq`` order: the bus drops no user object while it holds a lock,
and defers bus calls made from inside one of its locked sections until the
thread leaves it.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas_events import ANY, Event, EventBus, EventType, SinkStats, Subscription, correlate

from .conftest import Workers

ET = EventType


class Released(enum.Enum):
    """Events announced by finalizers."""

    GONE = "gone"


class SeqSink:
    """A sink that records the seqs it is pushed, and can run a hook inside the lock."""

    kind = "test"
    blocks = False

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.during_push: Callable[[], None] | None = None

    def push(self, event: Event[Any]) -> None:
        self.seqs.append(event.seq)
        hook, self.during_push = self.during_push, None
        if hook is not None:
            hook()

    def wait_for_room(self) -> None:
        return None

    def close(self) -> None:
        return None

    def stats(self) -> SinkStats:
        return {"kind": self.kind}


class Announcer:
    """Publishes ``Released.GONE`` (its tag as data) from ``__del__``; optionally cyclic."""

    def __init__(self, bus: EventBus, tag: object, cyclic: bool = False) -> None:
        self.bus = bus
        self.tag = tag
        self.me = self if cyclic else None

    def __del__(self) -> None:
        self.bus.publish(Released.GONE, self.tag)


@pytest.fixture
def low_gc_thresholds() -> Iterator[None]:
    """The cyclic GC runs every few allocations, i.e. inside every bus operation."""
    old = gc.get_threshold()
    gc.set_threshold(3, 2, 2)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _run_with_deadline(fn: Callable[[], None], seconds: float = 60) -> None:
    workers = Workers()
    workers.start(fn, name="bus-user")
    workers.join(timeout=seconds)  # a deadlock fails here with the stuck stack


def test_history_eviction_finalizer_publishes_after_the_recording_step() -> None:
    """A payload evicted from history publishes in __del__: recorded after, sinks see seq order."""
    bus = EventBus(history_limit=1)
    sink = SeqSink()
    bus.attach_sink(sink)
    bus.publish(ET.AGENT_STARTED, Announcer(bus, "a"))
    bus.publish(ET.TASK_STARTED)  # evicts the Announcer's event -> __del__ publishes
    assert sink.seqs == [1, 2, 3]
    assert [e.type for e in bus.history()] == [Released.GONE]


def test_run_history_eviction_finalizer_publishes_after_the_recording_step() -> None:
    """Same for the per-run history: a run's evicted payload publishes after unlocking."""
    bus = EventBus(history_limit=0, run_history_limit=1, max_runs=1)
    sink = SeqSink()
    bus.attach_sink(sink)
    bus.publish(ET.AGENT_STARTED, Announcer(bus, "r"), correlation_id="run-1")
    bus.publish(ET.TASK_STARTED, correlation_id="run-2")  # evicts run-1 whole
    assert sink.seqs == [1, 2, 3]


def test_a_finalizer_run_inside_the_recording_lock_is_deferred_in_order() -> None:
    """GC inside the locked section (forced from a sink): the publish is deferred, no deadlock."""
    bus = EventBus()
    sink = SeqSink()
    bus.attach_sink(sink)
    seen: list[Any] = []
    bus.subscribe(ANY, lambda e: seen.append(e.data))

    def collect_garbage() -> None:
        Announcer(bus, "from-gc", cyclic=True)
        gc.collect()  # runs __del__ here, while the bus holds its recording lock

    sink.during_push = collect_garbage

    def work() -> None:
        bus.publish(ET.TASK_STARTED, "outer")

    _run_with_deadline(work)
    assert sink.seqs == [1, 2]
    assert [e.data for e in bus.history()] == ["outer", "from-gc"]
    assert seen == ["outer", "from-gc"]


def test_finalizers_inside_the_registry_lock_subscribe_publish_and_close() -> None:
    """GC inside a registry operation: subscribe, publish and close from __del__ all complete."""
    bus = EventBus()
    scope = bus.scope("doomed")
    tokens: list[Subscription] = []
    got: list[Any] = []

    class Busy:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            tokens.append(bus.subscribe(Released.GONE, lambda e: got.append(e.data)))
            bus.publish(Released.GONE, "while-locked")
            scope.close()

    def replay_from(history: Any) -> list[Event[Any]]:
        Busy()
        gc.collect()  # inside attach_sink's write-locked section
        return []

    def work() -> None:
        bus.attach_sink(SeqSink(), replay_from=replay_from)
        bus.publish(Released.GONE, "after")

    _run_with_deadline(work)
    assert tokens
    assert tokens[0].active
    assert scope.closed
    assert [e.data for e in bus.history(Released.GONE)] == ["while-locked", "after"]
    assert got[-1] == "after"


def test_dropping_a_receiver_under_the_registry_lock_defers_its_finalizer() -> None:
    """Closing a scope releases the last reference to a handler's closure after unlocking."""
    bus = EventBus()
    scope = bus.scope("s")
    holder = Announcer(bus, "closure")

    def handler(event: Event[Any], h: Announcer = holder) -> None:
        return None

    scope.subscribe(ET.TASK_STARTED, handler)  # token not kept
    del holder, handler

    _run_with_deadline(scope.close)  # disconnects the receiver under the write lock
    assert [e.data for e in bus.history(Released.GONE)] == ["closure"]


def test_clear_history_releases_payloads_after_unlocking() -> None:
    """clear_history() drops the events outside the lock: their finalizers may publish."""
    bus = EventBus()
    for i in range(3):
        bus.publish(ET.AGENT_STARTED, Announcer(bus, i))

    _run_with_deadline(bus.clear_history)
    assert sorted(e.data for e in bus.history()) == [0, 1, 2]
    assert [e.seq for e in bus.history()] == [4, 5, 6]


class Witness:
    """Records, from ``__del__``, what the bus looks like while it is being released."""

    def __init__(self, bus: EventBus, tag: int, seen: list[tuple[int, int, int]]) -> None:
        self.bus = bus
        self.tag = tag
        self.seen = seen

    def __del__(self) -> None:
        # stats() takes the recording lock: it would raise RuntimeError if this
        # thread still held it. The publish from another thread would hang.
        size = self.bus.stats()["history_size"]
        other = threading.Thread(target=self.bus.publish, args=(Released.GONE, self.tag))
        other.start()
        other.join(10)
        assert not other.is_alive(), "the recording lock is held while releasing"
        self.seen.append((self.tag, size, self.bus.stats()["history_size"]))


def test_clear_history_swaps_under_the_lock_and_releases_after() -> None:
    """clear_history() empties the history under the lock; the events die after, oldest first.

    The main history and the per-run history both: the first release already
    sees an empty history and a free lock (another thread publishes into the
    new history meanwhile), and the runs' events are released after the main
    history's, each oldest first.
    """
    bus = EventBus(history_limit=3, run_history_limit=10)
    seen: list[tuple[int, int, int]] = []
    with correlate("run"):
        for i in range(5):  # 0 and 1 leave the main history, stay in the run's
            bus.publish(ET.AGENT_STARTED, Witness(bus, i, seen))
    for i in range(5, 8):  # in the main history only
        bus.publish(ET.AGENT_STARTED, Witness(bus, i, seen))

    _run_with_deadline(bus.clear_history)

    # Main history first (5, 6, 7; 2-4 are still held by their run), then the run.
    assert [tag for tag, _, _ in seen] == [5, 6, 7, 0, 1, 2, 3, 4]
    # Each release saw the history already cleared, then one more event from
    # the other thread's publish.
    assert [(before, after) for _, before, after in seen] == [(k, k + 1) for k in range(3)] + [
        (3, 3)
    ] * 5
    assert [e.data for e in bus.history(Released.GONE)] == [2, 3, 4]  # limit 3
    assert bus.history(correlation_id="run") == []
    assert bus.last_seq == 8 + 8


@pytest.mark.usefixtures("low_gc_thresholds")
def test_cyclic_garbage_that_publishes_during_every_bus_operation() -> None:
    """GC thresholds lowered; cyclic garbage announces itself during subscribe/publish/close."""
    bus = EventBus(history_limit=100_000)
    sink = SeqSink()
    bus.attach_sink(sink)
    n = 400

    def work() -> None:
        for i in range(n):
            Announcer(bus, i, cyclic=True)
            token = bus.subscribe(ET.TASK_STARTED, lambda e: None)
            bus.publish(ET.TASK_STARTED, i)
            scope = bus.scope(f"s{i}")
            scope.publish(ET.TASK_COMPLETED, i)
            token()
            scope.close()
        gc.collect()
        bus.publish(ET.TASK_FAILED)  # runs anything still deferred

    _run_with_deadline(work, seconds=120)
    gone = sorted(e.data for e in bus.history(Released.GONE))
    assert gone == list(range(n))
    seqs = [e.seq for e in bus.history()]
    assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))
    assert sink.seqs == seqs


class _Cyclic:
    """Garbage only the cyclic collector frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


def _garbage_maker(bus: EventBus, trigger: enum.Enum) -> Callable[[Event[Any]], Event[Any]]:
    """A middleware that leaves cyclic garbage whose finalizer publishes ``Released.GONE``.

    With GC thresholds ``(1, 1, 1)`` the collector frees it at one of the
    next few allocations, i.e. somewhere between the middleware and the
    first handler call of the same event: recording, the context, the queue.
    """

    def middleware(ev: Event[Any]) -> Event[Any]:
        if ev.type is trigger:
            obj = _Cyclic()
            weakref.finalize(obj, bus.publish, Released.GONE, ev.data)
            del obj
        return ev

    return middleware


def _seq_recorder(into: list[int]) -> Callable[[Event[Any]], None]:
    def record(ev: Event[Any]) -> None:
        into.append(ev.seq)

    return record


@pytest.fixture
def eager_gc() -> Iterator[None]:
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*old)


@pytest.mark.usefixtures("eager_gc")
@pytest.mark.parametrize("levels", [0, 1, 2])
@pytest.mark.parametrize("api", ["publish", "publish_event"])
def test_gc_finalizer_publishing_mid_publish_keeps_seq_order(levels: int, api: str) -> None:
    """Queued mode: every handler sees ``seq`` order even when the collector runs mid-publish.

    The finalizer's publish happens between an event's middleware and its
    handlers, on the publishing bus and (``levels``) on scopes above it. The
    outermost publish's queue is visible from before recording until it is
    drained, so the finalizer's event is delivered after the current one,
    at every level.
    """
    root = EventBus()
    bus = root
    for i in range(levels):
        bus = bus.scope(f"s{i}")
    seen: dict[str, list[int]] = {}
    level: EventBus | None = bus
    while level is not None:
        level.subscribe(ANY, _seq_recorder(seen.setdefault(level.name, [])))
        level = level.parent
    bus.add_middleware(_garbage_maker(bus, ET.TASK_STARTED))
    for i in range(50):
        if api == "publish":
            bus.publish(ET.TASK_STARTED, i)
        else:
            bus.publish_event(Event.create(ET.TASK_STARTED, i))
    gc.collect()
    for name, order in seen.items():
        assert order == sorted(order), name
    assert sorted(e.data for e in root.history(Released.GONE)) == list(range(50))


@pytest.mark.usefixtures("eager_gc")
def test_gc_finalizer_publishing_mid_publish_from_a_handler_keeps_seq_order() -> None:
    """The same when the interrupted publish is itself nested (queued behind its parent)."""
    bus = EventBus()
    seen: list[int] = []
    bus.subscribe(ANY, lambda e: seen.append(e.seq))
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED, e.data))
    bus.add_middleware(_garbage_maker(bus, ET.TASK_COMPLETED))
    for i in range(50):
        bus.publish(ET.TASK_STARTED, i)
    gc.collect()
    assert seen == sorted(seen)
    assert len(bus.history(Released.GONE)) == 50


def test_finalizers_publishing_inside_context_variable_updates_do_not_crash() -> None:
    """python/cpython#148891: a finalizer re-entering ``ContextVar.set`` can crash CPython.

    The bus never sets the dispatch context from code the collector runs
    (``_context.COLLECTOR``); the storm script publishes from finalizers
    the collector runs at nearly every allocation, four times over, half of
    them inside ``correlate()`` blocks (the unguarded script crashes in about
    two runs of three on 3.11).
    """
    script = Path(__file__).with_name("_finalizer_storm.py")
    for args in ([], [], ["correlate"], ["correlate"]):
        done = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "3000"


def test_collections_while_the_interpreter_wipes_the_modules_never_raise_in_the_hook() -> None:
    """The collector hook runs in gc.callbacks until the very end, after its module is wiped.

    At exit CPython sets the globals of the modules still alive to ``None``;
    a collection after that (a finalizer of a module wiped later) still
    calls ``_context.COLLECTOR``, which must not need its module's globals
    (else "Exception ignored in: <...Collector...>" at every collection).
    """
    script = Path(__file__).with_name("_teardown_collections.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
    assert "Exception ignored" not in done.stderr, done.stderr[-2000:]


class _Child(enum.Enum):
    CHILD = "child"


class _Acyclic:
    """Freed as soon as its last reference goes (no collection needed)."""


@pytest.mark.asyncio
@pytest.mark.parametrize("collected", [False, True], ids=["refcount", "collector"])
async def test_async_handler_of_a_finalizers_event_runs_in_that_events_context(
    collected: bool,
) -> None:
    """The task of an async handler gets the causation and correlation of its event.

    Also when a finalizer the collector runs published the event: its
    dispatch context is kept off the context variable then (see
    ``_context.Collector``), so the task's copied context must be given it,
    not the one of the code the collection interrupted.
    """
    bus = EventBus()

    async def on_gone(e: Event[Any]) -> None:
        bus.publish(_Child.CHILD, e.data)

    bus.subscribe(Released.GONE, on_gone)

    def announce() -> None:
        with correlate("gone"):
            bus.publish(Released.GONE, 1)

    with correlate("outer"):
        obj = _Cyclic() if collected else _Acyclic()
        weakref.finalize(obj, announce)
        del obj
        if collected:
            gc.collect()
    for _ in range(200):
        if bus.history(_Child.CHILD):
            break
        await asyncio.sleep(0.005)
    (gone,) = bus.history(Released.GONE)
    (child,) = bus.history(_Child.CHILD)
    assert gone.correlation_id == "gone"
    assert (child.parent_id, child.correlation_id) == (gone.id, "gone")

"""Event ids made a block at a time (hi/lo): unique, counting, fork-safe, thread-safe."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import atlas_events
from atlas_events import Event, EventBus, EventType
from atlas_events._ids import BLOCK, TAKER, IdSource, new_id, process_prefix


def _counter(event_id: str) -> int:
    prefix, _, counter = event_id.partition("-")
    assert len(prefix) == 16
    return int(counter)


def test_ids_are_unique_and_prefixed() -> None:
    """Ids are unique in the process and carry the process's random prefix."""
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(i.startswith(process_prefix() + "-") for i in ids)


def test_a_source_counts_up_by_one_across_blocks() -> None:
    """One thread's ids form the base-10 counter 1000, 1001, ... with no gap at a block's end."""
    source = IdSource()
    ids = [source.new_id() for _ in range(3 * BLOCK + 7)]
    counters = [_counter(i) for i in ids]
    assert counters == list(range(BLOCK, BLOCK + len(ids)))
    assert {i.partition("-")[0] for i in ids} == {source.prefix[:-1]}


def test_take_raises_index_error_until_refilled() -> None:
    """The hot path's contract: ``take()`` raises IndexError when a block is used up."""
    source = IdSource()
    with pytest.raises(IndexError):
        source.take()
    first = source.refill()
    assert _counter(first) == BLOCK
    taken = [source.take() for _ in range(BLOCK - 1)]
    assert _counter(taken[-1]) == 2 * BLOCK - 1
    with pytest.raises(IndexError):
        source.take()
    assert _counter(source.refill()) == 2 * BLOCK


def test_reset_drops_the_ids_made_ahead() -> None:
    """After reset (a forked child) no id made ahead under the old prefix is handed out."""
    source = IdSource()
    before = source.new_id()
    assert source.ids  # the rest of the block is waiting
    source.reset()
    after = source.new_id()
    assert after.partition("-")[0] != before.partition("-")[0]
    assert _counter(after) == BLOCK


def test_threads_taking_ids_across_refills_get_unique_ids() -> None:
    """8 threads take 5,000 ids each from one source (many refills race): all unique, none lost."""
    source = IdSource()
    per_thread = 5_000
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            results.append([source.new_id() for _ in range(per_thread)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL over often: refills interleave
    try:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert errors == []
    ids = [i for chunk in results for i in chunk]
    assert len(ids) == len(set(ids)) == 8 * per_thread
    # Every block claimed was handed out whole, except what is still waiting.
    handed = {_counter(i) for i in ids} | {_counter(i) for i in source.ids}
    blocks = {c // BLOCK for c in handed}
    assert len(handed) == len(blocks) * BLOCK


def test_published_ids_are_unique_across_block_boundaries() -> None:
    """publish, Event.create + publish_event and HANDLER_ERROR reports share the blocks."""
    ids: list[str] = []
    with EventBus(history_limit=0) as bus:
        bus.subscribe(EventType.HANDLER_ERROR, lambda e: ids.append(e.id))

        def fails(event: Event[int]) -> None:
            if event.data % 7 == 0:
                raise RuntimeError("boom")

        bus.subscribe(EventType.TASK_STARTED, fails)
        for n in range(2 * BLOCK + 3):
            if n % 2:
                ids.append(bus.publish(EventType.TASK_STARTED, n))
            else:
                ids.append(bus.publish_event(Event.create(EventType.TASK_STARTED, n)))
    assert len(ids) > 2 * BLOCK + 3  # the reports are in too
    assert len(set(ids)) == len(ids)


class _ForkMidRefill:
    """A block counter whose first ``next()`` does what a fork's child hook does."""

    def __init__(self, source: IdSource) -> None:
        self.source = source
        self.forked = False

    def __iter__(self) -> _ForkMidRefill:
        return self

    def __next__(self) -> int:
        if not self.forked:
            self.forked = True
            self.source.reset()  # as if a finalizer forked here: the child's hook ran
            return 1
        return next(self.source.blocks)


def test_a_refill_interrupted_by_a_fork_drops_the_parents_block() -> None:
    """A reset inside a refill (a fork from a finalizer) leaves no old-prefix id to hand out."""
    source = IdSource()
    old_prefix = source.prefix
    source.blocks = _ForkMidRefill(source)
    first = source.new_id()
    assert not first.startswith(old_prefix)
    assert first.startswith(source.prefix)
    assert not any(i.startswith(old_prefix) for i in source.ids)


def test_a_refill_in_another_process_draws_a_new_prefix() -> None:
    """A refill that finds another pid (a child, before its fork hook ran) starts afresh."""
    source = IdSource()
    source.new_id()
    old_prefix = source.prefix
    source.ids.clear()
    source.pid = -1  # as if this process were a fork of the one that drew the prefix
    child_first = source.new_id()
    assert not child_first.startswith(old_prefix)
    assert _counter(child_first) == BLOCK
    assert source.pid == os.getpid()


def test_takers_refuse_while_a_fork_is_under_way() -> None:
    """Between the fork hooks every taker refuses; ids still come, through refill()."""
    source = IdSource()
    namespace: dict[str, Any] = {}
    source.bind(namespace)
    first = source.new_id()
    source._refuse_takes()
    try:
        with pytest.raises(IndexError):
            source.take()
        with pytest.raises(IndexError):
            namespace[TAKER]()
        during = source.new_id()  # the ids made ahead, taken through refill()
    finally:
        source._allow_takes()
    after = namespace[TAKER]()
    counters = [_counter(i) for i in (first, during, after)]
    assert counters == sorted(set(counters))
    assert namespace[TAKER] == source.take


def test_a_child_before_its_hook_takes_no_parent_id() -> None:
    """Refusing takers inherited by a child send it to refill(), which sees the new pid."""
    source = IdSource()
    namespace: dict[str, Any] = {}
    source.bind(namespace)
    parent_id = source.new_id()
    source._refuse_takes()  # the parent's before hook ran; the child inherits this state
    source.pid = -1  # ... and this is the child: another process
    child_id = source.new_id()
    assert child_id.partition("-")[0] != parent_id.partition("-")[0]
    assert _counter(child_id) == BLOCK
    assert namespace[TAKER] == source.take  # the reset let takes through again
    assert _counter(namespace[TAKER]()) == BLOCK + 1


_CHILD_SCRIPT = """
import os, sys, threading
from atlas_events._ids import IdSource

source = IdSource()
early = []
# Hooks registered before the source's own: in the child the after hook
# runs first; the before hook runs after the source's (reverse order).
os.register_at_fork(
    before=lambda: early.append(source.new_id()),
    after_in_child=lambda: early.append(source.new_id()),
)
source.register_at_fork()

# A worker thread's thread-local whose finalizer takes an id: CPython drops
# it in the child before any fork hook runs.
local = threading.local()
dropped = []
class Session:
    def __del__(self):
        dropped.append(source.new_id())
ready, done = threading.Event(), threading.Event()
def worker():
    local.session = Session()
    ready.set()
    done.wait()
t = threading.Thread(target=worker)
t.start()
ready.wait()

# Two threads take ids flat out while the main thread forks.
stop = threading.Event()
taken = []
def taker():
    while not stop.is_set():
        taken.append(source.new_id())
takers = [threading.Thread(target=taker) for _ in range(2)]
for x in takers:
    x.start()
children = []
for _ in range(10):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            # early[-1] is this child's own early hook's id; the rest are the parent's.
            mine = dropped + early[-1:] + [source.new_id() for _ in range(1500)]
            os.write(w, " ".join(mine).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        children.append(f.read().split())
    os.waitpid(pid, 0)
stop.set()
for x in takers:
    x.join()
done.set()
t.join()
parent = set(taken) | set(early) | {source.new_id() for _ in range(1500)}
child_ids = [i for c in children for i in c]
assert all(len(c) == 1502 for c in children), [len(c) for c in children]
assert len(set(child_ids)) == len(child_ids), "children share ids"
assert not (parent & set(child_ids)), "a child handed out its parent's ids"
print("ok", len(parent), len(child_ids))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forks_never_hand_out_the_parents_ids(tmp_path: Path) -> None:
    """Children forked while threads take ids, with early hooks and thread-local finalizers."""
    # The package under test (a source tree, or an installed build), not the cwd's.
    package_root = str(Path(atlas_events.__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": package_root},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_drops_the_parents_block() -> None:
    """A child forked mid-block starts its own counter under its own prefix."""
    with EventBus() as bus:
        parent_id = bus.publish(EventType.TASK_STARTED, 1)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(r)
                ids = [bus.publish(EventType.TASK_STARTED, 2), new_id()]
                os.write(w, " ".join(ids).encode())
            finally:
                os._exit(0)
        os.close(w)
        child_id, child_new_id = os.read(r, 200).decode().split()
        os.close(r)
        os.waitpid(pid, 0)
        next_parent = bus.publish(EventType.TASK_STARTED, 3)
    assert parent_id.startswith(process_prefix() + "-")
    assert child_id.partition("-")[0] != parent_id.partition("-")[0]
    assert child_new_id.partition("-")[0] != process_prefix()
    assert _counter(child_id) == BLOCK
    assert _counter(child_new_id) == BLOCK + 1
    # The parent keeps its waiting ids (the child never takes them).
    assert _counter(next_parent) == _counter(parent_id) + 1

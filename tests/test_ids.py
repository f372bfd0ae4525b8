"""Event ids made a block at a time (hi/lo): unique, counting, fork-safe, thread-safe."""

from __future__ import annotations

import os
import threading

import pytest

from atlas_events import EventBus, EventType
from atlas_events._ids import BLOCK, IdSource


def _counter(event_id: str) -> int:
    prefix, _, counter = event_id.partition("-")
    assert len(prefix) == 16
    return int(counter)


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
    """8 threads take 5,000 ids each from one source (many refills race): all unique."""
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

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [i for chunk in results for i in chunk]
    assert len(ids) == len(set(ids)) == 8 * per_thread
    for chunk in results:  # each thread's own ids still count up
        counters = [_counter(i) for i in chunk]
        assert counters == sorted(counters)


def test_published_ids_are_unique_across_block_boundaries() -> None:
    """Publish, Event.create and HANDLER_ERROR reports all draw from the process's blocks."""
    with EventBus(history_limit=0) as bus:
        bus.subscribe(EventType.TASK_STARTED, lambda e: None)
        ids = [bus.publish(EventType.TASK_STARTED, n) for n in range(2 * BLOCK + 3)]
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_drops_the_parents_block() -> None:
    """A child forked mid-block starts its own counter under its own prefix."""
    with EventBus() as bus:
        parent_id = bus.publish(EventType.TASK_STARTED, 1)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(r)
            os.write(w, bus.publish(EventType.TASK_STARTED, 2).encode())
            os._exit(0)
        os.close(w)
        child_id = os.read(r, 200).decode()
        os.close(r)
        os.waitpid(pid, 0)
        next_parent = bus.publish(EventType.TASK_STARTED, 3)
    assert child_id.partition("-")[0] != parent_id.partition("-")[0]
    assert _counter(child_id) == BLOCK
    assert _counter(next_parent) == _counter(parent_id) + 1

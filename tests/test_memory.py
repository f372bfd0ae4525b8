"""Memory stays flat: a bounded history keeps a bounded number of events alive.

Bounds, not timings. ``tracemalloc`` slows every allocation down several
times, so a million publishes are checked in two ways: traced windows at the
start and at the end of the run (every byte allocated in a window and still
alive at its end is counted) and, across the whole run, the interpreter's
count of allocated memory blocks (``sys.getallocatedblocks``), which costs
nothing to keep.
"""

from __future__ import annotations

import gc
import itertools
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events._ids import BLOCK, new_id

ET = EventType.TASK_STARTED
HISTORY = 1000
TOTAL = 1_000_000
WINDOW = 50_000  # publishes traced at the start and at the end of the run
KIB = 1024
# Ids are made a block at a time (hi/lo, atlas_events._ids): a refill may put
# one block of ids on top of the peak, each a str plus a slot in the block's
# list and one in the list the refill builds it in.
ID_BLOCK = BLOCK * (sys.getsizeof(new_id()) + 2 * 8)


def _passthrough(event: Event[object]) -> Event[object]:
    return event


def _publisher(bus: EventBus, **options: Any) -> Callable[[int], None]:
    publish = bus.publish

    def run(n: int) -> None:
        for i in itertools.repeat(None, n):
            publish(ET, i, **options)

    return run


@pytest.fixture
def traced() -> Iterator[None]:
    """Stop tracemalloc after the test, whatever happens."""
    try:
        yield
    finally:
        tracemalloc.stop()


def _traced_window(run: Callable[[int], None], n: int) -> tuple[int, int]:
    """Trace ``n`` publishes after history has turned over; return (growth, peak rise)."""
    tracemalloc.start()
    run(2 * HISTORY)  # history now holds only traced events
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    run(n)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current - base, peak - base


@pytest.mark.usefixtures("traced")
def test_a_million_publishes_with_history_limit_1000_keep_memory_flat() -> None:
    """1,000,000 publishes (a handler, a middleware, history 1000): memory does not grow."""
    with EventBus(history_limit=HISTORY, name="memory") as bus:
        bus.add_middleware(_passthrough)
        seen = [0]

        def handler(event: Event[object]) -> None:
            seen[0] += 1

        bus.subscribe(ET, handler)
        run = _publisher(bus)
        run(2 * HISTORY)
        gc.collect()
        blocks_before = sys.getallocatedblocks()

        growth_start, peak_start = _traced_window(run, WINDOW)
        run(TOTAL - 2 * WINDOW - 4 * HISTORY)  # the bulk, untraced
        growth_end, peak_end = _traced_window(run, WINDOW)

        gc.collect()
        blocks_growth = sys.getallocatedblocks() - blocks_before
        assert bus.last_seq == TOTAL + 2 * HISTORY
        assert seen[0] == bus.last_seq
        assert len(bus.history()) == HISTORY

    # Ids gain a digit now and then: at most a byte per retained event. One
    # leaked event per 1000 publishes would keep ~13 KiB per window.
    assert growth_start < 4 * KIB, growth_start
    assert growth_end < 4 * KIB, growth_end
    # Only the event in flight (and its replacement) is ever extra, plus at
    # most one block of ids made ahead.
    assert peak_start < 8 * KIB + ID_BLOCK, peak_start
    assert peak_end < 8 * KIB + ID_BLOCK, peak_end
    # One leaked object per 1000 publishes would add ~1000 blocks.
    assert blocks_growth < 500, blocks_growth


@pytest.mark.usefixtures("traced")
def test_correlated_runs_are_evicted_and_memory_stays_flat() -> None:
    """Events spread over many runs: per-run history is bounded by max_runs x run limit."""
    with EventBus(history_limit=HISTORY, run_history_limit=10, max_runs=50, name="runs") as bus:
        runs = itertools.cycle([f"run-{i}" for i in range(500)])
        publish = bus.publish

        def run(n: int) -> None:
            for _ in itertools.repeat(None, n):
                publish(ET, correlation_id=next(runs))

        run(20 * HISTORY)
        growth, peak = _traced_window(run, WINDOW)
        stats = bus.stats()

    assert stats["runs_retained"] == 50
    assert stats["runs_evicted"] > 1000
    assert growth < 4 * KIB, growth
    assert peak < 8 * KIB + ID_BLOCK, peak  # + one block of ids made ahead

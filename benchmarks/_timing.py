"""Timing helpers: interleaved, repeated, median-of-rounds measurements.

Every scenario builds one *loop* per implementation: a function ``run(n)``
that publishes ``n`` events the way a user of that library would. The
runner calibrates ``n`` so one measurement takes about ``target_s``, then
measures every implementation once per round, rotating the order each
round, and keeps the median of the rounds. Ratios are therefore taken
between figures measured moments apart in the same process, which keeps
them stable on a shared, noisy machine.

Single-threaded loops are timed with the thread's CPU clock by default
(``--clock cpu``): time the process spends descheduled while other work
runs on the machine is not counted. ``--clock wall`` uses
``time.perf_counter_ns`` instead. The threads and end-to-end stream
scenarios always use wall time.

The cyclic garbage collector is paused while a loop runs (as ``timeit``
does): its pauses land on whichever implementation happens to be running
and only add noise.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Clock", "Loop", "Settings", "measure_interleaved", "median", "time_loop"]

Loop = Callable[[int], object]
"""``run(n)``: publish ``n`` events."""

Clock = Literal["cpu", "wall"]
_CLOCKS: dict[str, Callable[[], int]] = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure.

    Attributes:
        repeats: Rounds per scenario (the median is reported).
        target_s: Approximate duration of one measurement.
        quick: Fixed, tiny iteration counts (for the smoke test).
        thread_events: Events per configuration in the threads scenario (the
            total, split between its threads).
        stream_events: Events in the end-to-end stream scenario.
        clock: ``"cpu"`` (thread CPU time) or ``"wall"`` for per-event loops.
        stall_history: History size (events) of the stalls scenario and of
            the memory report's GC figures.
        stall_types: Event types subscribed in the stalls scenario.
        stall_window_s: Seconds the publisher runs against each operation.
        stall_rounds: Rounds of the stalls scenario.
        switch_interval: ``sys.setswitchinterval`` during the stalls scenario
            (seconds).
    """

    repeats: int = 21
    target_s: float = 0.01
    quick: bool = False
    thread_events: int = 20_000
    stream_events: int = 10_000
    clock: Clock = "cpu"
    stall_history: int = 1_000_000
    stall_types: int = 20_000
    stall_window_s: float = 0.3
    stall_rounds: int = 3
    switch_interval: float = 0.0005

    @classmethod
    def quick_mode(cls) -> Settings:
        return cls(
            repeats=2,
            target_s=0.0,
            quick=True,
            thread_events=300,
            stream_events=300,
            stall_history=2000,
            stall_types=50,
            stall_window_s=0.02,
            stall_rounds=1,
        )


def time_loop(run: Loop, n: int, clock: Clock = "wall") -> float:
    """Nanoseconds per iteration of one ``run(n)`` call (GC paused)."""
    now = _CLOCKS[clock]
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = now()
        run(n)
        elapsed = now() - t0
    finally:
        if enabled:
            gc.enable()
    return elapsed / n


def _calibrate(run: Loop, settings: Settings) -> int:
    if settings.quick:
        return 50
    n = 100
    while True:
        per = time_loop(run, n, settings.clock)
        if per * n >= 5e6 or n >= 1_000_000:  # >= 5 ms: good enough to scale
            break
        n *= 4
    return max(100, int(settings.target_s * 1e9 / max(per, 1.0)))


def measure_interleaved(
    loops: dict[str, Loop],
    settings: Settings,
    *,
    after: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """ns/event of each loop, one measurement per loop per round, order rotated.

    ``after`` runs after every measurement, untimed (e.g. to drain queues).
    """
    names = list(loops)
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = _calibrate(loops[name], settings)
        if after is not None:
            after()
    runs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            runs[name].append(time_loop(loops[name], counts[name], settings.clock))
            if after is not None:
                after()
    return runs


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))

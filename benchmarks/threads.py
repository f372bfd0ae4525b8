"""Threads scenario: 1, 2 and 4 threads publishing at once, on one bus and on one bus each.

Every configuration does the same total work (``Settings.thread_events``
events, split evenly between the threads), so the ratio
``wall(1 thread) / wall(k threads)`` is the throughput of ``k`` threads
relative to one: ``1.0`` means no loss, ``0.2`` means five times slower in
total. With the GIL no Python-level publish runs in parallel, so ``1.0`` is
the ceiling; a lock convoy (the GIL and a contended lock handed back and forth,
a context switch per event) shows up as a ratio far below it and as many
context switches per 1,000 events.

"One bus" means every thread publishes through the same bus (peers: the same
signal / emitter / topic); "one bus each" gives every thread its own, the
uncontended reference. ``cpu_per_event_vs_one_thread`` is the process's CPU
time per event with ``k`` threads over one thread's: a convoy burns CPU in
hand-offs, so it shows there even on a machine so busy that wall-time ratios
mostly measure how much of a core the process got (``one_thread_ns_per_event``
gives wall and CPU side by side: far apart means a loaded machine, and the
wall-time ratios are then not meaningful). Context switches are the process's voluntary plus
involuntary switches (``getrusage``) over the configuration's run, per 1,000
events; the waiting main thread adds one or two.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence

from . import peers as _peers
from ._result import PAYLOAD, ScenarioResult, make_result, noop_handlers
from ._timing import Loop, Settings, median
from .peers import Implementation

__all__ = ["CONFIGS", "threads"]

CONFIGS: tuple[tuple[str, int, bool], ...] = (
    ("1 thread", 1, True),
    ("2 threads, one bus", 2, True),
    ("4 threads, one bus", 4, True),
    ("2 threads, one bus each", 2, False),
    ("4 threads, one bus each", 4, False),
)
"""(label, threads, shared bus) for each configuration, measured in this order."""


def _switches() -> tuple[int, int]:
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return 0, 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw, usage.ru_nivcsw


def run_threads(loops: Sequence[Loop], per_thread: int) -> tuple[float, float, int, int]:
    """Run ``loops[i](per_thread)`` in one thread each, all released at once.

    Returns:
        Wall seconds from the release to the last thread's end, the process's
        CPU seconds (all threads) and its voluntary and involuntary context
        switches meanwhile.
    """
    barrier = threading.Barrier(len(loops) + 1)

    def worker(run: Loop) -> None:
        barrier.wait()
        run(per_thread)

    workers = [threading.Thread(target=worker, args=(run,)) for run in loops]
    for w in workers:
        w.start()
    enabled = gc.isenabled()
    gc.disable()
    try:
        v0, i0 = _switches()
        barrier.wait()
        t0, c0 = time.perf_counter(), time.process_time()
        for w in workers:
            w.join()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        v1, i1 = _switches()
        return wall, cpu, v1 - v0, i1 - i0
    finally:
        if enabled:
            gc.enable()


def _loops_for(impl: Implementation) -> dict[str, list[Loop]]:
    """The loops of each configuration: one shared, or one per thread."""
    shared = impl.fanout(noop_handlers(1), PAYLOAD)
    return {
        label: [shared] * n
        if one_bus
        else [impl.fanout(noop_handlers(1), PAYLOAD) for _ in range(n)]
        for label, n, one_bus in CONFIGS
    }


def threads(settings: Settings) -> ScenarioResult:
    """1, 2 and 4 threads publishing at once vs one thread, the same total work.

    Each round measures every implementation (order rotated) in every
    configuration back to back; ratios are the medians of the rounds'
    ratios, so both sides of each ratio were measured moments apart.
    """
    total = settings.thread_events - settings.thread_events % 4
    kinds = _peers.IMPLEMENTATIONS
    impls = [kind() for kind in kinds]
    try:
        loops = {impl.name: _loops_for(impl) for impl in impls}
        names = list(loops)
        walls: dict[str, dict[str, list[float]]] = {n: {c[0]: [] for c in CONFIGS} for n in names}
        cpus: dict[str, dict[str, list[float]]] = {n: {c[0]: [] for c in CONFIGS} for n in names}
        vol: dict[str, dict[str, list[float]]] = {n: {c[0]: [] for c in CONFIGS} for n in names}
        invol: dict[str, dict[str, list[float]]] = {n: {c[0]: [] for c in CONFIGS} for n in names}
        for r in range(settings.repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                for label, n, _ in CONFIGS:
                    wall, cpu, v, i = run_threads(loops[name][label], total // n)
                    walls[name][label].append(wall)
                    cpus[name][label].append(cpu)
                    vol[name][label].append(v * 1000 / total)
                    invol[name][label].append(i * 1000 / total)
    finally:
        for impl in impls:
            impl.close()
    res = make_result(
        "threads",
        "1 / 2 / 4 threads publishing at once, 1 subscriber, same total work:"
        " wall ns per event of the total with 2 threads on one bus",
        {name: [w * 1e9 / total for w in walls[name]["2 threads, one bus"]] for name in names},
    )
    res["extra"]["throughput_vs_one_thread"] = {
        name: {
            label: _ratio(walls[name]["1 thread"], walls[name][label]) for label, *_ in CONFIGS[1:]
        }
        for name in names
    }
    res["extra"]["cpu_per_event_vs_one_thread"] = {
        name: {
            label: _ratio(cpus[name][label], cpus[name]["1 thread"]) for label, *_ in CONFIGS[1:]
        }
        for name in names
    }
    res["extra"]["context_switches_per_1000_events"] = {
        name: {
            label: median(vol[name][label]) + median(invol[name][label]) for label, *_ in CONFIGS
        }
        for name in names
    }
    res["extra"]["voluntary_switches_per_1000_events"] = {
        name: {label: median(vol[name][label]) for label, *_ in CONFIGS} for name in names
    }
    res["extra"]["one_thread_ns_per_event"] = {
        name: {
            "wall": median(walls[name]["1 thread"]) * 1e9 / total,
            "cpu": median(cpus[name]["1 thread"]) * 1e9 / total,
        }
        for name in names
    }
    res["extra"]["events_per_configuration"] = total
    return res


def _ratio(one: Sequence[float], many: Sequence[float]) -> float:
    """Median over rounds of ``one[r] / many[r]`` (throughput of many relative to one)."""
    return median([a / b for a, b in zip(one, many, strict=True) if b > 0])

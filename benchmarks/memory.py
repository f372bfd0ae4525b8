"""Memory report: bytes per event retained in history, and the garbage collector's pauses.

For atlas-events (and the ``--baseline`` copy, if loaded):

* the size of one :class:`Event`, its id and timestamp (``sys.getsizeof``);
* tracemalloc bytes per event that history keeps alive (payload-free events,
  ``data=None``: the bus's own overhead, on top of which each event keeps its
  payload alive), with and without a correlation id;
* with ``Settings.stall_history`` events retained (1,000,000 by default):
  GC-tracked objects per retained event, the pause of a full
  ``gc.collect()`` (wall and CPU time), the same after ``gc.freeze()``, the
  automatic full collections while the history fills, and the collections
  while publishing as many events again into the full history (default
  thresholds).
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from typing import Any, TypedDict

from atlas_events import EventBus, EventType

from . import peers as _peers
from ._timing import Settings, median
from .peers import Atlas

__all__ = ["MemoryFigures", "MemoryReport", "memory_report"]

TYPE = EventType.TASK_STARTED


class MemoryFigures(TypedDict):
    event_getsizeof: int
    event_slots: int
    id_getsizeof: int
    timestamp_getsizeof: int
    traced_events: int
    traced_bytes_per_event: float
    traced_bytes_per_event_with_correlation: float
    gc_retained_events: int
    gc_tracked_objects_per_event: float
    gc_full_collect_ms_empty_history: float
    gc_full_collect_ms: float
    gc_full_collect_cpu_ms: float
    gc_full_collect_ms_after_freeze: float
    gc_filling_full_collections: int
    gc_filling_full_pause_max_ms: float
    gc_filling_full_pause_total_ms: float
    gc_steady_collections: int


MemoryReport = dict[str, MemoryFigures]
"""Figures per implementation (``atlas-events``, ``atlas-events (baseline)``)."""


def _bytes_per_event(bus_class: type[EventBus], n: int, correlation_id: str | None) -> float:
    """tracemalloc bytes that ``n`` more events in history keep alive, per event."""
    with bus_class(history_limit=n, run_history_limit=n, name="mem") as bus:
        bus.publish(TYPE)  # warm up: route, signal, context
        bus.clear_history()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n):
                bus.publish(TYPE, correlation_id=correlation_id)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        return (after - before) / n


def _full_collect_ms(rounds: int = 3) -> tuple[float, float]:
    """Median wall and CPU time of ``rounds`` full collections (ms)."""
    walls, cpus = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.thread_time()
        gc.collect()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    return median(walls) * 1e3, median(cpus) * 1e3


class _PauseRecorder:
    """Times every automatic collection through ``gc.callbacks`` (wall time)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self.started)

    def publish_with_gc(self, publish: Any, n: int) -> None:
        """``n`` publishes with the collector on (default thresholds), recording its pauses."""
        gc.callbacks.append(self)
        gc.enable()
        try:
            for _ in range(n):
                publish(TYPE, None)
        finally:
            gc.disable()
            gc.callbacks.remove(self)


def _gc_figures(bus_class: type[EventBus], n: int) -> dict[str, float]:
    """GC figures with ``n`` events retained in one bus's history.

    The history is filled with the collector on (its full collections while
    history grows are recorded); then, collector off, the full-collection
    pauses are timed; then ``n`` more publishes into the full history run
    with the collector on. In that steady state each publish frees the event
    it evicts, so the collector's allocation count does not grow and
    publishing alone triggers no collection: pauses then come from the
    application's own allocations, and cost what a full collection costs.
    """
    enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    filling, steady = _PauseRecorder(), _PauseRecorder()
    try:
        empty_ms, _ = _full_collect_ms()
        tracked0 = len(gc.get_objects())
        with bus_class(history_limit=n, name="gc") as bus:
            bus.add_middleware(_passthrough)
            bus.subscribe(TYPE, _handler)
            filling.publish_with_gc(bus.publish, n)
            gc.collect()
            per_event = (len(gc.get_objects()) - tracked0) / n
            full_ms, full_cpu_ms = _full_collect_ms()
            gc.freeze()
            try:
                frozen_ms, _ = _full_collect_ms()
            finally:
                gc.unfreeze()
            steady.publish_with_gc(bus.publish, n)
            bus.clear_history()
    finally:
        if enabled:
            gc.enable()
    gc.collect()
    grown = filling.pauses[2]
    return {
        "gc_tracked_objects_per_event": per_event,
        "gc_full_collect_ms_empty_history": empty_ms,
        "gc_full_collect_ms": full_ms,
        "gc_full_collect_cpu_ms": full_cpu_ms,
        "gc_full_collect_ms_after_freeze": frozen_ms,
        "gc_filling_full_collections": len(grown),
        "gc_filling_full_pause_max_ms": max(grown, default=0.0) * 1e3,
        "gc_filling_full_pause_total_ms": sum(grown) * 1e3,
        "gc_steady_collections": sum(len(p) for p in steady.pauses.values()),
    }


def _passthrough(event: Any) -> Any:
    return event


def _handler(event: Any) -> None:
    return None


def _figures(bus_class: type[EventBus], settings: Settings) -> MemoryFigures:
    n = 1000 if settings.quick else 20_000
    with bus_class(name="mem") as bus:
        bus.publish(TYPE)
        (ev,) = bus.history()
    gcf = _gc_figures(bus_class, settings.stall_history)
    return {
        "event_getsizeof": sys.getsizeof(ev),
        "event_slots": len({s for cls in type(ev).__mro__ for s in getattr(cls, "__slots__", ())}),
        "id_getsizeof": sys.getsizeof(ev.id),
        "timestamp_getsizeof": sys.getsizeof(ev.timestamp),
        "traced_events": n,
        "traced_bytes_per_event": _bytes_per_event(bus_class, n, None),
        "traced_bytes_per_event_with_correlation": _bytes_per_event(bus_class, n, "run-1"),
        "gc_retained_events": settings.stall_history,
        "gc_tracked_objects_per_event": gcf["gc_tracked_objects_per_event"],
        "gc_full_collect_ms_empty_history": gcf["gc_full_collect_ms_empty_history"],
        "gc_full_collect_ms": gcf["gc_full_collect_ms"],
        "gc_full_collect_cpu_ms": gcf["gc_full_collect_cpu_ms"],
        "gc_full_collect_ms_after_freeze": gcf["gc_full_collect_ms_after_freeze"],
        "gc_filling_full_collections": int(gcf["gc_filling_full_collections"]),
        "gc_filling_full_pause_max_ms": gcf["gc_filling_full_pause_max_ms"],
        "gc_filling_full_pause_total_ms": gcf["gc_filling_full_pause_total_ms"],
        "gc_steady_collections": int(gcf["gc_steady_collections"]),
    }


def memory_report(settings: Settings) -> MemoryReport:
    """Memory and GC figures for atlas-events (and the baseline copy, if loaded)."""
    kinds = [k for k in _peers.IMPLEMENTATIONS if issubclass(k, Atlas)]
    return {kind.name: _figures(kind.bus_class, settings) for kind in kinds}

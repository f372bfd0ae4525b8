"""Memory report: how big an event is, and what history retains per event."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import TypedDict

from atlas_events import EventBus, EventType

__all__ = ["MemoryReport", "memory_report"]


class MemoryReport(TypedDict):
    event_getsizeof: int
    event_slots: int
    id_getsizeof: int
    timestamp_getsizeof: int
    retained_events: int
    traced_bytes_per_event: float
    traced_bytes_per_event_with_correlation: float


def _bytes_per_event(n: int, correlation_id: str | None) -> float:
    """tracemalloc bytes that ``n`` more events in history keep alive, per event."""
    with EventBus(history_limit=n, run_history_limit=n, name="mem") as bus:
        bus.publish(EventType.TASK_STARTED)  # warm up: route, signal, context
        bus.clear_history()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n):
                bus.publish(EventType.TASK_STARTED, correlation_id=correlation_id)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        return (after - before) / n


def memory_report(quick: bool = False) -> MemoryReport:
    """Sizes of one :class:`Event` and the traced bytes per event kept in history.

    Payload-free events (``data=None``, no metadata): the figure is the bus's
    own overhead, on top of which each event keeps its payload alive.
    """
    n = 1000 if quick else 20_000
    with EventBus(name="mem") as bus:
        bus.publish(EventType.TASK_STARTED)
        (ev,) = bus.history()
    return {
        "event_getsizeof": sys.getsizeof(ev),
        "event_slots": len({s for cls in type(ev).__mro__ for s in getattr(cls, "__slots__", ())}),
        "id_getsizeof": sys.getsizeof(ev.id),
        "timestamp_getsizeof": sys.getsizeof(ev.timestamp),
        "retained_events": n,
        "traced_bytes_per_event": _bytes_per_event(n, None),
        "traced_bytes_per_event_with_correlation": _bytes_per_event(n, "run-1"),
    }

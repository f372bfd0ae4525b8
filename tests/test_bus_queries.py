"""Tests for _bus_queries: stats() and subscriber_count()."""

from __future__ import annotations

from atlas_events import ANY, EventBus, EventType

ET = EventType


def test_stats_counts(bus: EventBus) -> None:
    """stats() reports published, delivered, subscribers per type, history size and limit."""
    bus.subscribe(ET.TASK_STARTED, lambda e: None)
    bus.subscribe(ANY, lambda e: None)
    bus.publish(ET.TASK_STARTED)
    bus.publish(ET.TASK_COMPLETED)
    s = bus.stats()
    assert s["published"] == 2
    assert s["delivered"] == 3
    assert s["subscribers"] == {"EventType.TASK_STARTED": 1, "ANY": 1}
    assert s["history_size"] == 2
    assert s["history_limit"] == 1000
    assert s["handler_errors"] == 0
    assert s["dropped_by_middleware"] == 0
    assert bus.subscriber_count() == 2
    assert bus.subscriber_count(ET.TASK_STARTED) == 1

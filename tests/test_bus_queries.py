"""Tests for _bus_queries: stats() and subscriber_count()."""

from __future__ import annotations

import sys
import threading

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


def test_stats_stay_exact_while_another_thread_publishes() -> None:
    """Every stats() taken during concurrent publishes is one consistent cut of the counters.

    published, delivered and history_size are read under the recording lock
    together, so each sample satisfies the same equalities as a quiet bus;
    the subscriber counts (read from the registry) are unaffected by
    publishes; clear_history() meanwhile empties the history and the
    counters keep counting.
    """
    bus = EventBus(history_limit=50)
    for _ in range(2):
        bus.subscribe(ET.TASK_STARTED, lambda e: None)
    bus.subscribe(ANY, lambda e: None)
    n = 5000
    go, halfway, cleared = threading.Event(), threading.Event(), threading.Event()

    def publisher() -> None:
        go.wait(10)
        for i in range(n):
            if i == n // 2:
                halfway.set()
            elif i == 3 * n // 4:
                cleared.wait(10)  # the clear has happened, while this thread published
            bus.publish(ET.TASK_STARTED if i % 2 else ET.TASK_COMPLETED, i)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the two threads often
    thread = threading.Thread(target=publisher)
    samples = 0
    cleared_at: int | None = None
    try:
        thread.start()
        go.set()
        while thread.is_alive() or samples == 0:
            s = bus.stats()
            published = s["published"]
            # TASK_STARTED (odd i): 3 handlers; TASK_COMPLETED (even i): ANY only.
            assert s["delivered"] == published + 2 * (published // 2)
            assert s["subscribers"] == {"EventType.TASK_STARTED": 2, "ANY": 1}
            if cleared_at is None:
                assert s["history_size"] == min(published, 50)
                if halfway.is_set():
                    bus.clear_history()
                    cleared_at = published
                    cleared.set()
            else:
                assert s["history_size"] <= min(published - cleared_at, 50)
            samples += 1
    finally:
        sys.setswitchinterval(interval)
        cleared.set()
        thread.join(10)
    assert cleared_at is not None
    assert samples > 1
    s = bus.stats()
    assert s["published"] == n
    assert s["delivered"] == n + 2 * (n // 2)
    assert s["history_size"] == 50
    assert [e.data for e in bus.history()] == list(range(n - 50, n))

"""Tests for _subscription: the unsubscribe token (idempotent, a context manager, thread-safe)."""

from __future__ import annotations

import threading

from atlas_events import EventBus, EventType

ET = EventType


def test_token_is_idempotent_and_reports_state(bus: EventBus) -> None:
    """Calling a token returns True once, then False; .active follows."""
    tok = bus.subscribe(ET.TASK_STARTED, lambda e: None)
    assert tok.active
    assert tok() is True
    assert not tok.active
    assert tok() is False
    assert tok.unsubscribe() is False
    assert "inactive" in repr(tok)


def test_token_as_context_manager(bus: EventBus) -> None:
    """`with bus.subscribe(...)` scopes the subscription to the block."""
    got: list[int] = []
    with bus.subscribe(ET.TASK_STARTED, lambda e: got.append(e.data)) as tok:
        bus.publish(ET.TASK_STARTED, 1)
    bus.publish(ET.TASK_STARTED, 2)
    assert got == [1]
    assert not tok.active


def test_token_is_thread_safe(bus: EventBus) -> None:
    """Many threads calling one token: exactly one gets True."""
    tok = bus.subscribe(ET.TASK_STARTED, lambda e: None)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        results.append(tok())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(results) == [False] * 7 + [True]

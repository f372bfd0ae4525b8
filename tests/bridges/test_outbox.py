"""The outbox's policies hold exactly under many publishing threads (the broker is down)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from atlas_events import EventBus, EventType, MiddlewareError
from atlas_events.bridges.redis import OutboxPolicy, RedisBridge
from atlas_events.exceptions import OutboxFullError

from ._support import free_port

THREADS = 8
PER_THREAD = 300
CAPACITY = 50


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible: widens any check-then-act window."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _hammer(bus: EventBus) -> tuple[int, int, list[BaseException]]:
    """Publish from THREADS threads at once; ``(returned, refused, other errors)``."""
    returned, refused = [0], [0]
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def publish() -> None:
        try:
            barrier.wait()
            for n in range(PER_THREAD):
                try:
                    bus.publish(EventType.TASK_STARTED, n)
                except MiddlewareError as exc:
                    if not isinstance(exc.__cause__, OutboxFullError):
                        raise
                    with lock:
                        refused[0] += 1
                else:
                    with lock:
                        returned[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return returned[0], refused[0], errors


def _offline_bridge(bus: EventBus, policy: OutboxPolicy) -> RedisBridge:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: the outbox only fills
    bridge = RedisBridge(
        bus, url, "outbox", node_id="A", outbox_size=CAPACITY, outbox_policy=policy,
        backoff_initial=0.5, backoff_max=1.0,
    )  # fmt: skip
    return bridge.start(timeout=None)


@pytest.mark.usefixtures("fast_switching")
@pytest.mark.parametrize("attempt", range(5))
def test_raise_policy_never_drops_a_publish_that_returned(
    make_bus: Callable[[str], EventBus], attempt: int
) -> None:
    """Under "raise", each publish either raises OutboxFullError or its event is queued."""
    bus = make_bus(f"raise{attempt}")
    bridge = _offline_bridge(bus, "raise")
    try:
        returned, refused, errors = _hammer(bus)
        health = bridge.health()
    finally:
        bridge.stop(timeout=0)
    assert not errors, errors
    assert returned + refused == THREADS * PER_THREAD
    assert health["outbox_dropped"] == 0
    assert health["outbox_depth"] == returned == CAPACITY


@pytest.mark.usefixtures("fast_switching")
@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drop_policies_count_exactly_what_they_drop(
    make_bus: Callable[[str], EventBus], policy: OutboxPolicy
) -> None:
    """Under the drop policies, depth + dropped is exactly what was published."""
    bus = make_bus(policy)
    bridge = _offline_bridge(bus, policy)
    try:
        returned, refused, errors = _hammer(bus)
        health = bridge.health()
    finally:
        bridge.stop(timeout=0)
    assert not errors, errors
    assert refused == 0
    assert returned == THREADS * PER_THREAD
    assert health["outbox_depth"] == CAPACITY
    assert health["outbox_depth"] + health["outbox_dropped"] == returned


def test_a_reservation_whose_event_was_dropped_is_returned(
    make_bus: Callable[[str], EventBus],
) -> None:
    """A later middleware that drops an admitted event does not shrink the outbox for good."""
    bus = make_bus("drop-later")
    bridge = _offline_bridge(bus, "raise")
    drop = bus.add_middleware(lambda ev: None)  # runs after the bridge's check
    try:
        for n in range(CAPACITY * 3):
            bus.publish(EventType.TASK_STARTED, n)  # admitted, then dropped: never refused
        drop()
        for n in range(CAPACITY):
            bus.publish(EventType.TASK_STARTED, n)
        with pytest.raises(MiddlewareError) as info:
            bus.publish(EventType.TASK_STARTED, -1)
        assert isinstance(info.value.__cause__, OutboxFullError)
        assert bridge.health()["outbox_depth"] == CAPACITY
    finally:
        bridge.stop(timeout=0)

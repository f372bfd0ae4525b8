"""Tests for _registry: routes and their order, private signals, churn, identity keys."""

from __future__ import annotations

import enum
import threading
from typing import Any

import blinker

from atlas_events import ANY, Event, EventBus, EventType, declare
from atlas_events.middleware import DropTypes

from .conftest import Alpha, Beta, Color

ET = EventType


def test_handlers_run_in_subscription_order_with_any_interleaved(bus: EventBus) -> None:
    """ANY and type-specific handlers interleave in the order they were subscribed."""
    calls: list[str] = []
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("t1"))
    bus.subscribe(ANY, lambda e: calls.append("any1"))
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("t2"))
    bus.subscribe(ANY, lambda e: calls.append("any2"))
    bus.publish(ET.TASK_STARTED)
    assert calls == ["t1", "any1", "t2", "any2"]
    calls.clear()
    bus.publish(ET.TASK_COMPLETED)
    assert calls == ["any1", "any2"]


def test_any_subscribed_after_first_publish_still_receives(bus: EventBus) -> None:
    """An ANY subscription reaches types whose dispatch snapshot already exists."""
    got: list[Any] = []
    bus.publish(ET.TASK_STARTED, 0)
    bus.subscribe(ANY, lambda e: got.append(e.data))
    bus.publish(ET.TASK_STARTED, 1)
    bus.publish(Color.RED, 2)
    assert got == [1, 2]


def test_signals_are_private_per_bus() -> None:
    """Each bus has its own blinker signals; the global namespace is untouched."""
    before = dict(blinker.default_namespace)
    a, b = EventBus(), EventBus()
    sa, sb = a.get_signal(ET.TASK_STARTED), b.get_signal(ET.TASK_STARTED)
    assert isinstance(sa, blinker.Signal)
    assert sa is not sb
    assert a.get_signal(ET.TASK_STARTED) is sa
    assert dict(blinker.default_namespace) == before


def test_signal_holds_the_subscriptions_and_send_reaches_them(bus: EventBus) -> None:
    """The private signal is the registry: receivers appear there, and send() calls them."""
    got: list[Any] = []
    tok = bus.subscribe(ET.TASK_STARTED, got.append, filter=lambda e: e.data == 1)
    sig = bus.get_signal(ET.TASK_STARTED)
    assert len(sig.receivers) == 1
    ev = Event.create(ET.TASK_STARTED, 1)
    sig.send(ev)
    sig.send(Event.create(ET.TASK_STARTED, 2))
    assert got == [ev]
    tok()
    assert len(sig.receivers) == 0


def test_concurrent_publish_subscribe_unsubscribe(bus: EventBus) -> None:
    """Threads publishing while others churn subscriptions lose and duplicate nothing."""
    seen: dict[int, list[int]] = {t: [] for t in range(4)}
    lock = threading.Lock()

    def record(e: Event[Any]) -> None:
        t, i = e.data
        with lock:
            seen[t].append(i)

    bus.subscribe(ET.TASK_STARTED, record)
    errors: list[BaseException] = []
    stop = threading.Event()

    def publisher(t: int) -> None:
        try:
            for i in range(2000):
                bus.publish(ET.TASK_STARTED, (t, i))
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    def churn() -> None:
        try:
            while not stop.is_set():
                bus.subscribe(ET.TASK_STARTED, lambda e: None)()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in range(4)]
    churner = threading.Thread(target=churn)
    churner.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    churner.join(30)
    if errors:
        raise errors[0]
    for n in range(4):
        assert seen[n] == list(range(2000))
    seqs = [e.seq for e in bus.history()]
    assert seqs == sorted(seqs)
    assert len(seqs) == 1000


class Lookalike(enum.StrEnum):
    """A user StrEnum whose value equals a core EventType value."""

    STARTED = "task.started"


def test_equal_valued_members_of_different_enums_stay_apart(bus: EventBus) -> None:
    """Routing, counts, declarations and DropTypes go by member identity, not value."""
    got: list[Any] = []
    bus.subscribe(Alpha.X, lambda e: got.append(("alpha", e.data)))
    bus.subscribe(ET.TASK_STARTED, lambda e: got.append(("core", e.data)))
    bus.publish(Beta.Y, 1)
    bus.publish(Lookalike.STARTED, 2)
    assert got == []
    bus.publish(Alpha.X, 3)
    bus.publish(ET.TASK_STARTED, 4)
    assert got == [("alpha", 3), ("core", 4)]
    assert bus.subscriber_count(Beta.Y) == 0
    assert bus.subscriber_count(Alpha.X) == 1
    assert set(bus.stats()["subscribers"]) == {"Alpha.X", "EventType.TASK_STARTED"}
    bus.declare(declare(Alpha.X, int))
    bus.publish(Beta.Y, "not an int: Beta.Y is not declared")
    bus.add_middleware(DropTypes(Alpha.X))
    bus.publish(Beta.Y, 5)
    assert bus.history()[-1].type is Beta.Y
    assert bus.stats()["dropped_by_middleware"] == 0

"""What goes on the wire is the event as its publisher and the middleware left it.

The bridge's publish check encodes an outbound event's payload while the
publisher still holds it and hands the bytes to its outbox, so a payload
mutated after ``publish`` returns still travels as published; a later
middleware that replaces the event is honoured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import attrs
import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import RedisBridge

from ._support import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def pair(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> Iterator[tuple[EventBus, list[Event[Any]]]]:
    """A publishing bus and the list of what the other node received."""
    a, b = make_bus("a"), make_bus("b")
    got: list[Event[Any]] = []
    b.subscribe(EventType.TASK_COMPLETED, got.append)
    bridges = [
        RedisBridge(b, redis_url, namespace, node_id="node-b", block_ms=100).start(),
        RedisBridge(a, redis_url, namespace, node_id="node-a", block_ms=100).start(),
    ]
    yield a, got
    for bridge in bridges:
        bridge.stop()


def _mutate_after_publish(bus: EventBus) -> None:
    """A local handler that changes the payload dict right after it was published."""

    def scribble(ev: Event[Any]) -> None:
        data = cast("dict[str, Any]", ev.data)
        data["n"] = -1
        data["added"] = True

    bus.subscribe(EventType.TASK_COMPLETED, scribble)


def test_payload_mutated_after_publish_travels_as_published(
    pair: tuple[EventBus, list[Event[Any]]],
) -> None:
    a, got = pair
    _mutate_after_publish(a)
    payloads = [{"n": n} for n in range(50)]
    for payload in payloads:
        a.publish(EventType.TASK_COMPLETED, payload)
    assert all(p["n"] == -1 for p in payloads)  # the local handler did change them
    assert wait_until(lambda: len(got) == 50)
    assert [ev.data for ev in got] == [{"n": n} for n in range(50)]


def test_a_later_middleware_returning_a_copy_keeps_the_snapshot(
    pair: tuple[EventBus, list[Event[Any]]],
) -> None:
    """A copy with the same id, payload and metadata objects is the same event."""
    a, got = pair
    a.add_middleware(lambda ev: attrs.evolve(ev))
    _mutate_after_publish(a)
    for n in range(20):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    assert wait_until(lambda: len(got) == 20)
    assert [ev.data for ev in got] == [{"n": n} for n in range(20)]


def test_a_later_middleware_replacing_the_payload_is_honoured(
    pair: tuple[EventBus, list[Event[Any]]],
) -> None:
    """Other nodes get what local handlers got, not what the publish check saw."""
    a, got = pair
    a.add_middleware(
        lambda ev: attrs.evolve(ev, data={**cast("dict[str, Any]", ev.data), "stamped": True})
    )
    seen_locally: list[Any] = []
    a.subscribe(EventType.TASK_COMPLETED, lambda ev: seen_locally.append(ev.data))
    for n in range(20):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    assert wait_until(lambda: len(got) == 20)
    assert [ev.data for ev in got] == seen_locally
    assert seen_locally == [{"n": n, "stamped": True} for n in range(20)]
    time.sleep(0.05)
    assert len(got) == 20


def test_a_later_middleware_moving_the_event_out_of_scope_keeps_it_local(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """The scope filter applies to the event as recorded, not as the publish check saw it."""
    a, b = make_bus("a"), make_bus("b")
    got: list[Event[Any]] = []
    b.subscribe(EventType.TASK_COMPLETED, got.append)

    def relocate(ev: Event[Any]) -> Event[Any]:
        data = cast("dict[str, Any]", ev.data)
        return attrs.evolve(ev, scope=("private",)) if data.get("move") else ev

    with (
        RedisBridge(b, redis_url, namespace, node_id="node-b", block_ms=100),
        RedisBridge(a, redis_url, namespace, node_id="node-a", block_ms=100, scopes=["agents"]),
    ):
        a.add_middleware(relocate)
        agents = a.scope("agents")
        agents.publish(EventType.TASK_COMPLETED, {"n": 1, "move": True})
        agents.publish(EventType.TASK_COMPLETED, {"n": 2})
        assert wait_until(lambda: len(got) == 1)
        time.sleep(0.2)
    assert [ev.data for ev in got] == [{"n": 2}]

"""ShardedRedisBridge on one redis-server: lifecycle, validation, the router, asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import ShardedRedisBridge
from atlas_events.exceptions import BridgeConnectionError

from ._support import free_port, wait_until

pytestmark = pytest.mark.redis


def test_options_are_validated_before_anything_is_attached(
    make_bus: Callable[[str], EventBus],
) -> None:
    """Bad options raise naming the option; the bus keeps no middleware or sink."""
    bus = make_bus("a")
    with pytest.raises(ValueError, match="shards"):
        ShardedRedisBridge(bus, shards=0)
    with pytest.raises(TypeError, match="receive"):
        ShardedRedisBridge(bus, shards=2, receive=False)
    with pytest.raises(ValueError, match="maxlen"):
        ShardedRedisBridge(bus, shards=2, maxlen=0)
    with pytest.raises(ValueError, match="scope"):
        ShardedRedisBridge(bus, shards=2, read_scopes=[3])  # type: ignore[list-item]
    assert bus.stats()["sinks"] == []


def test_unreachable_broker_fails_the_start_and_leaves_the_bus_as_it_was(
    make_bus: Callable[[str], EventBus],
) -> None:
    """start() raises BridgeConnectionError in time; no stream's bridge keeps running."""
    bus = make_bus("a")
    bridge = ShardedRedisBridge(
        bus, f"redis://127.0.0.1:{free_port()}/0", "gone", shards=3, node_id="a"
    )
    with pytest.raises(BridgeConnectionError):
        bridge.start(timeout=1.0)
    assert bridge.state == "stopped"
    assert bus.stats()["sinks"] == []
    bus.publish(EventType.TASK_STARTED, {"still": "works"})


def test_one_sink_for_all_streams_and_per_stream_counters(
    redis_url: str, namespace: str, make_bus: Callable[[str], EventBus]
) -> None:
    """The bus sees one sharded sink; each stream counts what it sent; stop detaches it."""
    bus = make_bus("a")
    with ShardedRedisBridge(bus, redis_url, namespace, shards=4, node_id="a") as bridge:
        sinks = bus.stats()["sinks"]
        assert [s["kind"] for s in sinks] == ["redis-bridge-sharded"]
        for name in ("agents", "tools", "mail"):
            bus.scope(name).publish(EventType.TASK_STARTED, {"n": 1})
        assert wait_until(lambda: bridge.health()["totals"]["sent"] == 3)
        per_stream = [h["sent"] for h in bridge.health()["streams"]]
        expected = [0] * 4
        for name in ("agents", "tools", "mail"):
            expected[bridge.layout.index_of_key(name)] += 1
        assert per_stream == expected
    assert bus.stats()["sinks"] == []
    assert bridge.state == "stopped"


@pytest.mark.asyncio
async def test_async_start_and_stop_carry_events(
    redis_url: str, namespace: str, make_bus: Callable[[str], EventBus]
) -> None:
    """async with: both nodes connect without blocking the loop, and events cross."""
    a, b = make_bus("a"), make_bus("b")
    got: list[Event[Any]] = []
    b.subscribe(EventType.TASK_COMPLETED, got.append)
    async with (
        ShardedRedisBridge(a, redis_url, namespace, shards=3, node_id="a", block_ms=100),
        ShardedRedisBridge(b, redis_url, namespace, shards=3, node_id="b", block_ms=100) as rb,
    ):
        assert rb.connected
        for name in ("x", "y", "z"):
            a.scope(name).publish(EventType.TASK_COMPLETED, {"n": name})
        for _ in range(400):
            if len(got) == 3:
                break
            await asyncio.sleep(0.025)
    assert sorted(ev.data["n"] for ev in got) == ["x", "y", "z"]


@pytest.mark.asyncio
async def test_a_failed_async_start_is_undone(make_bus: Callable[[str], EventBus]) -> None:
    """start_async against no broker raises and leaves no sink and no running stream."""
    bus = make_bus("a")
    bridge = ShardedRedisBridge(bus, f"redis://127.0.0.1:{free_port()}/0", "gone", shards=2)
    with pytest.raises(BridgeConnectionError):
        await bridge.start_async(timeout=1.0)
    assert bridge.state == "stopped"
    assert bus.stats()["sinks"] == []

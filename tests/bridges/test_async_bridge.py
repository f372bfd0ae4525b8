"""RedisBridge from asyncio code: start, wait and stop without blocking the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from atlas_events import EventBus, EventType
from atlas_events.bridges.redis import RedisBridge
from atlas_events.exceptions import BridgeConnectionError

from ._support import free_port

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


class _Ticker:
    """Counts how often the loop got to run while something was awaited."""

    def __init__(self) -> None:
        self.ticks = 0
        self.longest_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now
            self.ticks += 1

    def __enter__(self) -> _Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def _unreachable(bus: EventBus) -> RedisBridge:
    url = f"redis://127.0.0.1:{free_port()}/0"
    return RedisBridge(bus, url, "nowhere", node_id="n", backoff_max=0.1)


def _busy_bridge(bus: EventBus, url: str, namespace: str) -> RedisBridge:
    """A bridge whose lifecycle lock a concurrent call holds for 0.3 s.

    Its ``start()`` therefore lingers in its thread, so a cancellation lands
    while the bridge is half-started.
    """
    bridge = RedisBridge(bus, url, namespace, node_id="node-a")
    bridge._life.acquire()
    threading.Timer(0.3, bridge._life.release).start()
    return bridge


def _assert_bus_untouched(bridge: RedisBridge, bus: EventBus) -> None:
    assert bridge.state == "stopped"
    assert not any(t.is_alive() for t in bridge._workers.threads)
    assert bus.stats()["sinks"] == []
    assert bus.stats()["middleware"] == 0


async def test_async_with_carries_events_between_nodes(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """``async with`` starts both bridges; a remote event reaches an async stream."""
    a, b = make_bus("a"), make_bus("b")
    with _Ticker() as ticker:
        async with (
            RedisBridge(a, redis_url, namespace, node_id="node-a", block_ms=100) as bridge_a,
            RedisBridge(b, redis_url, namespace, node_id="node-b", block_ms=100) as bridge_b,
        ):
            assert bridge_a.connected
            assert bridge_b.connected
            assert await bridge_b.wait_connected_async()
            async with b.stream(EventType.TASK_COMPLETED) as events:
                a.publish(EventType.TASK_COMPLETED, {"n": 1})
                remote = await asyncio.wait_for(events.get(), timeout=10)
        assert ticker.ticks > 0
    assert remote.origin == "node-a"
    assert remote.data == {"n": 1}
    assert bridge_a.state == "stopped"
    assert bridge_b.state == "stopped"


async def test_stop_async_flushes_the_outbox(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """Events published just before ``stop_async`` still reach the other node."""
    a, b = make_bus("a"), make_bus("b")
    receiver = await RedisBridge(
        b, redis_url, namespace, node_id="node-b", block_ms=100
    ).start_async()
    sender = await RedisBridge(
        a, redis_url, namespace, node_id="node-a", block_ms=100
    ).start_async()
    try:
        async with b.stream(EventType.WORKFLOW_NODE_ENTERED) as events:
            for n in range(200):
                a.publish(EventType.WORKFLOW_NODE_ENTERED, {"n": n})
            await sender.stop_async()
            got = [(await asyncio.wait_for(events.get(), timeout=10)).data for _ in range(200)]
        assert got == [{"n": n} for n in range(200)]
        assert sender.health()["abandoned"] == 0
    finally:
        await receiver.stop_async()
        await sender.stop_async()  # idempotent


async def test_start_async_times_out_without_blocking_the_loop(
    make_bus: Callable[[str], EventBus],
) -> None:
    """An unreachable broker: BridgeConnectionError after ``timeout``, loop kept running."""
    a = make_bus("a")
    bridge = _unreachable(a)
    with _Ticker() as ticker:
        started = time.monotonic()
        with pytest.raises(BridgeConnectionError):
            await bridge.start_async(timeout=0.4)
        elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 5
    assert ticker.ticks >= 10  # a blocking start would have let it tick at most once
    assert ticker.longest_gap < 0.3
    _assert_bus_untouched(bridge, a)


async def test_cancelled_start_async_leaves_the_bus_as_it_was(
    make_bus: Callable[[str], EventBus],
) -> None:
    """Cancelling the task that awaits ``start_async`` stops the half-started bridge."""
    a = make_bus("a")
    bridge = _unreachable(a)
    task = asyncio.get_running_loop().create_task(bridge.start_async(timeout=30))
    await asyncio.sleep(0.2)
    assert bridge.state in ("connecting", "disconnected")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _assert_bus_untouched(bridge, a)
    a.publish(EventType.TASK_STARTED, {"still": "works"})
    assert a.history()[-1].data == {"still": "works"}


async def test_start_async_on_a_running_bridge_is_refused_and_keeps_it_running(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """A second ``start_async`` raises RuntimeError and does not stop the first start."""
    a = make_bus("a")
    bridge = await RedisBridge(a, redis_url, namespace, node_id="node-a").start_async()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            await bridge.start_async()
        assert bridge.connected
        assert len(a.stats()["sinks"]) == 1
    finally:
        await bridge.stop_async()
    _assert_bus_untouched(bridge, a)


async def test_start_async_without_timeout_returns_at_once(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """``timeout=None`` returns while connecting; ``wait_connected_async`` then waits."""
    a = make_bus("a")
    bridge = RedisBridge(a, redis_url, namespace, node_id="node-a")
    assert not await bridge.wait_connected_async()  # not started: False at once
    await bridge.start_async(timeout=None)
    try:
        async with asyncio.timeout(10):
            assert await bridge.wait_connected_async()
    finally:
        await bridge.stop_async()
    assert not await bridge.wait_connected_async()


async def test_cancelling_every_task_during_start_async_leaves_nothing_running(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """The shutdown pattern ``for t in all_tasks(): t.cancel()`` cannot orphan a started bridge."""
    a = make_bus("a")
    bridge = _busy_bridge(a, redis_url, namespace)
    task = asyncio.get_running_loop().create_task(bridge.start_async(timeout=5))
    for _ in range(3):
        await asyncio.sleep(0)
    for other in asyncio.all_tasks():
        if other is not asyncio.current_task():
            other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.5)  # anything left running would have connected by now
    _assert_bus_untouched(bridge, a)


async def test_start_async_cancelled_twice_is_undone_before_it_returns(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """A second cancel does not cut the undoing short: a restart right after works and stays."""
    a = make_bus("a")
    bridge = _busy_bridge(a, redis_url, namespace)
    task = asyncio.get_running_loop().create_task(bridge.start_async(timeout=5))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _assert_bus_untouched(bridge, a)
    await bridge.start_async(timeout=5)
    try:
        await asyncio.sleep(0.5)  # a late undo would stop it meanwhile
        assert bridge.connected
        assert len(a.stats()["sinks"]) == 1
    finally:
        await bridge.stop_async()


async def test_stop_while_start_async_waits_ends_the_wait(
    make_bus: Callable[[str], EventBus],
) -> None:
    """A concurrent stop() ends start_async's wait at once with BridgeConnectionError."""
    a = make_bus("a")
    bridge = _unreachable(a)
    task = asyncio.get_running_loop().create_task(bridge.start_async(timeout=30))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await bridge.stop_async(0)
    with pytest.raises(BridgeConnectionError, match="stopped while connecting"):
        await task
    assert time.monotonic() - started < 5
    _assert_bus_untouched(bridge, a)

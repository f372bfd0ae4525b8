"""Bridge health: one counter definition, the link state machine, no silent thread death."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, get_type_hints

import pytest

from atlas_events import EventBus, EventType
from atlas_events.bridges._health import Announcer, LinkState, new_counters
from atlas_events.bridges.redis import BridgeCounters, BridgeHealth, RedisBridge

from ._support import free_port


def _link(bus: EventBus) -> LinkState:
    counters = new_counters()
    return LinkState(Announcer(bus, "node", counters), "ns", "redis://h/0", counters)


def test_health_reports_every_counter_once(make_bus: Callable[[str], EventBus]) -> None:
    """health() has exactly BridgeHealth's keys; the counters come from BridgeCounters."""
    bridge = RedisBridge(make_bus("a"), f"redis://127.0.0.1:{free_port()}/0", node_id="n")
    health = bridge.health()
    assert set(health) == set(get_type_hints(BridgeHealth))
    assert set(get_type_hints(BridgeCounters)) <= set(health)
    stats = bridge._sink_stats()
    assert set(stats["counters"]) == set(get_type_hints(BridgeCounters))


@pytest.mark.parametrize("thread", ["sender", "reader"])
@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit, RuntimeError])
def test_a_thread_that_dies_says_so(
    make_bus: Callable[[str], EventBus],
    caplog: pytest.LogCaptureFixture,
    thread: str,
    exc_type: type[BaseException],
) -> None:
    """Whatever ends a bridge thread: state failed, the failure in words, a log, BRIDGE_FAILED."""
    bus = make_bus("a")
    failed: list[Any] = []
    bus.subscribe(EventType.BRIDGE_FAILED, lambda ev: failed.append(ev.data))
    link = _link(bus)
    link.set("connecting")
    link.up()

    def target() -> None:
        raise exc_type("boom")

    runner = threading.Thread(target=link.guard(thread, target))
    runner.start()
    runner.join(5)
    assert link.state == "failed"
    assert link.failure == f"{thread} thread stopped: {exc_type.__name__}: boom"
    assert [f.error for f in failed] == [link.failure]
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    link.up()  # a failed bridge does not come back by itself
    assert link.state == "failed"


def test_announcement_handlers_cannot_end_a_bridge_thread(
    make_bus: Callable[[str], EventBus],
) -> None:
    """A BRIDGE_* handler raising SystemExit is contained and counted, like a remote handler."""
    bus = make_bus("a")
    exits: list[Any] = []
    bus.subscribe(EventType.BRIDGE_CONNECTED, lambda ev: (_ for _ in ()).throw(SystemExit(1)))
    bus.subscribe(EventType.BRIDGE_HANDLER_EXIT, lambda ev: exits.append(ev.data))
    link = _link(bus)
    link.set("connecting")
    link.up()  # announces BRIDGE_CONNECTED: must not raise
    assert link.state == "connected"
    assert link.counters["handler_exits"] == 1
    assert len(exits) == 1
    assert "SystemExit" in exits[0].error

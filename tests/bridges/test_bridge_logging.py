"""The bridge's log records carry the structured atlas_* fields, on a real redis-server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from atlas_events import Event, EventBus, EventType
from atlas_events._logging import LOG_FIELDS
from atlas_events.bridges.redis import DeadLetter, RedisBridge

from ._support import RedisServer, wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client of the shared test server (to write raw stream entries)."""
    c = redis_server.client()
    yield c
    c.close()


def _records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def test_handler_exit_record_names_the_remote_event(
    make_bus: Callable[[str], EventBus],
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A remote event's handler raising SystemExit: the ERROR record carries that event."""
    a, b = make_bus("a"), make_bus("b")
    seen: list[str] = []

    def on_task(ev: Event[Any]) -> None:
        seen.append(ev.id)
        raise SystemExit(3)

    b.subscribe(EventType.TASK_STARTED, on_task)
    caplog.set_level(logging.ERROR, logger="atlas_events.bridges")
    with (
        RedisBridge(b, redis_url, namespace, node_id="B", block_ms=100) as bridge_b,
        RedisBridge(a, redis_url, namespace, node_id="A", block_ms=100),
    ):
        event_id = a.publish(EventType.TASK_STARTED, "x", correlation_id="run-7")
        assert wait_until(lambda: bridge_b.health()["handler_exits"] == 1)
    assert seen == [event_id]
    [record] = _records(caplog, "raised SystemExit")
    assert all(hasattr(record, field) for field in LOG_FIELDS)
    assert record.atlas_event_id == event_id  # type: ignore[attr-defined]
    assert record.atlas_event_type == "EventType.TASK_STARTED"  # type: ignore[attr-defined]
    assert record.atlas_correlation_id == "run-7"  # type: ignore[attr-defined]
    assert record.atlas_scope == ""  # type: ignore[attr-defined]
    assert record.atlas_bus == "b"  # type: ignore[attr-defined]
    assert record.atlas_node == "B"  # type: ignore[attr-defined]


def test_dead_letter_record_names_the_entry(
    make_bus: Callable[[str], EventBus],
    redis_url: str,
    namespace: str,
    client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An undecodable entry: the dead-letter WARNING carries the node, bus and entry id."""
    bus = make_bus("b")
    dead: list[DeadLetter] = []
    bus.subscribe(EventType.BRIDGE_DEAD_LETTERED, lambda ev: dead.append(ev.data))
    caplog.set_level(logging.WARNING, logger="atlas_events.bridges")
    bridge = RedisBridge(bus, redis_url, namespace, node_id="B", block_ms=100)
    bridge.start()
    try:
        client.xadd(bridge.stream_key, {"e": b"not an event"})
        assert wait_until(lambda: len(dead) == 1)
    finally:
        bridge.stop()
        client.delete(bridge.stream_key, bridge.dead_letter_key)
    [record] = _records(caplog, "dead-lettered")
    assert all(hasattr(record, field) for field in LOG_FIELDS)
    assert record.atlas_event_id is None  # type: ignore[attr-defined]
    assert record.atlas_entry_id == dead[0].entry_id  # type: ignore[attr-defined]
    assert record.atlas_node == "B"  # type: ignore[attr-defined]
    assert record.atlas_bus == "b"  # type: ignore[attr-defined]


def test_log_extra_refuses_context_fields_outside_the_prefix() -> None:
    """A context field must be atlas_-prefixed and must not shadow a LOG_FIELDS key."""
    from atlas_events._logging import log_extra

    assert log_extra(atlas_node="n")["atlas_node"] == "n"
    with pytest.raises(ValueError, match="node"):
        log_extra(node="n")
    with pytest.raises(ValueError, match="atlas_scope"):
        log_extra(atlas_scope="x")

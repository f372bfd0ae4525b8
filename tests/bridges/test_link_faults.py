"""Connections cut under load: batches in flight are resent, in order, never twice delivered.

The sender writes each ``XADD`` batch in one pipeline; the reader sends its
``XACK`` in the pipeline of the next ``XREADGROUP``. Here Redis itself stays
up and the bridges' connections (found by their ``CLIENT SETNAME`` name) are
killed (``CLIENT KILL``) again and again while thousands of events flow:
every event must arrive exactly once and in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from atlas_events import EventBus, EventType
from atlas_events.bridges.redis import RedisBridge

from ._support import RawCommands, RedisServer, wait_until

pytestmark = pytest.mark.redis


def _client_ids(raw: RawCommands, name: str) -> list[str]:
    """The ``CLIENT LIST`` ids of the connections named ``name``."""
    listing = cast("bytes", raw.execute_command("CLIENT", "LIST")).decode()
    ids = []
    for line in listing.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if fields.get("name") == name:
            ids.append(fields["id"])
    return ids


@pytest.mark.parametrize("victim", ["sender", "reader"])
def test_connections_killed_under_load_lose_and_duplicate_nothing(
    redis_server: RedisServer,
    make_bus: Callable[[str], EventBus],
    namespace: str,
    victim: str,
) -> None:
    a, b = make_bus("a"), make_bus("b")
    total = 20_000
    received: list[int] = []
    b.subscribe(
        EventType.TASK_COMPLETED, lambda ev: received.append(cast("dict[str, int]", ev.data)["n"])
    )
    options: dict[str, Any] = {"block_ms": 100, "batch_size": 200, "backoff_initial": 0.01}
    bridge_b = RedisBridge(b, redis_server.url, namespace, node_id="node-b", **options)
    bridge_a = RedisBridge(
        a, redis_server.url, namespace, node_id="node-a", outbox_size=total + 1, **options
    )
    admin = redis_server.client()
    raw: RawCommands = admin
    kills = [0]
    done = threading.Event()

    def killer() -> None:
        while not done.is_set():
            time.sleep(0.03)
            name = "atlas-bridge:node-a:send" if victim == "sender" else "atlas-bridge:node-b:read"
            for client_id in _client_ids(raw, name):
                try:
                    raw.execute_command("CLIENT", "KILL", "ID", client_id)
                    kills[0] += 1
                except Exception:  # the connection was already gone or being replaced
                    pass

    with bridge_b, bridge_a:
        thread = threading.Thread(target=killer)
        thread.start()
        try:
            for n in range(total):
                a.publish(EventType.TASK_COMPLETED, {"n": n})
                if n % 2000 == 0:
                    time.sleep(0.02)  # let some batches go out between kills
            assert wait_until(lambda: len(received) >= total, timeout=60), len(received)
        finally:
            done.set()
            thread.join()
        time.sleep(0.3)  # a late duplicate would show up here
        health_a, health_b = bridge_a.health(), bridge_b.health()
    admin.close()
    context = f"kills={kills[0]} a={health_a} b={health_b}"
    assert kills[0] >= 3, context
    assert received == list(range(total)), context
    assert health_b["gaps"] == 0, context
    # Every entry read beyond one per event (resent batches, redelivered
    # pending entries) was recognised as a duplicate, none delivered.
    assert health_b["delivered"] == total, context
    assert health_b["received"] - total == health_b["duplicates"], context
    assert health_a["outbox_dropped"] == 0, context
    assert health_a["send_errors"] == 0, context
    assert health_a["disconnects"] >= 1 or health_b["disconnects"] >= 1, context


def test_stop_without_waiting_accounts_for_every_event(
    redis_server: RedisServer, make_bus: Callable[[str], EventBus], namespace: str
) -> None:
    """``stop(timeout=0)`` mid-flow: written batches count as sent, the rest as abandoned.

    Exactly: what the stream holds is ``sent``, and ``sent + abandoned`` is
    everything published (nothing dropped), also with two batches in flight.
    """
    admin = redis_server.client()
    try:
        for attempt in range(3):
            a = make_bus(f"a{attempt}")
            total = 30_000
            bridge = RedisBridge(
                a, redis_server.url, f"{namespace}-{attempt}", outbox_size=total + 1
            ).start()
            for n in range(total):
                a.publish(EventType.TASK_COMPLETED, {"n": n})
            time.sleep(0.02)  # a few batches out, more in flight
            bridge.stop(timeout=0)
            health = bridge.health()
            in_stream = admin.xlen(bridge.stream_key)
            context = f"attempt {attempt}: stream={in_stream} {health}"
            assert health["outbox_dropped"] == 0, context
            assert health["sent"] + health["abandoned"] == total, context
            assert in_stream == health["sent"], context
            assert health["abandoned"] > 0, context  # the stop really cut the flow short
            admin.delete(bridge.stream_key)
    finally:
        admin.close()

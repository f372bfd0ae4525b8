"""Broker faults against a redis-server the test owns: SIGKILL, restart, outbox overflow, ACLs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from atlas_events import Event, EventBus, EventType, MiddlewareError
from atlas_events.bridges.redis import BridgeStatus, OutboxPolicy, RedisBridge
from atlas_events.exceptions import BridgeConnectionError, OutboxFullError

from ._support import OPENSSL, RawCommands, RedisServer, make_tls_files, wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def bridges() -> Iterator[list[RedisBridge]]:
    """Bridges to stop after the test (before the server fixture kills the broker)."""
    made: list[RedisBridge] = []
    yield made
    for bridge in made:
        bridge.stop(timeout=1)


def _numbers(events: list[Event[Any]]) -> list[int]:
    return [int(cast("dict[str, Any]", e.data)["n"]) for e in events]


def test_sigkill_and_restart_loses_nothing_and_reconnects_fast(
    own_redis_server: RedisServer,
    make_bus: Callable[[str], EventBus],
    bridges: list[RedisBridge],
) -> None:
    """SIGKILL mid-run, restart on the same port and data dir.

    Every event is delivered exactly once and in order (acknowledged
    XADDs survive in the AOF, unacknowledged ones are retried from the
    outbox), the redelivered batch is de-duplicated, both bridges reconnect
    within 2 s of the broker's return, and publishing never stalls.
    """
    server = own_redis_server
    a, b = make_bus("a"), make_bus("b")
    total, hold_at = 3000, 400
    received: list[Event[Any]] = []
    held, release = threading.Event(), threading.Event()

    def on_b(ev: Event[Any]) -> None:
        received.append(ev)
        if cast("dict[str, int]", ev.data)["n"] == hold_at and not held.is_set():
            held.set()  # b's reader now sits on a read-but-unacknowledged batch
            release.wait(20)

    b.subscribe(EventType.TASK_COMPLETED, on_b)
    local: list[int] = []
    a.subscribe(
        EventType.TASK_COMPLETED, lambda ev: local.append(cast("dict[str, int]", ev.data)["n"])
    )
    reconnected: dict[str, float] = {}
    disconnected: list[Event[Any]] = []
    a.subscribe(EventType.BRIDGE_DISCONNECTED, disconnected.append)
    for bus, name in ((a, "a"), (b, "b")):

        def on_reconnected(ev: Event[Any], name: str = name) -> None:
            reconnected.setdefault(name, time.monotonic())

        bus.subscribe(EventType.BRIDGE_RECONNECTED, on_reconnected)
    bridge_a = RedisBridge(a, server.url, "faults", node_id="node-a", block_ms=100)
    bridge_b = RedisBridge(b, server.url, "faults", node_id="node-b", block_ms=100, batch_size=50)
    bridges += [bridge_a, bridge_b]
    bridge_a.start()
    bridge_b.start()

    slowest = [0.0]

    def publish_all() -> None:
        start = time.perf_counter()
        for n in range(total):
            t0 = time.perf_counter()
            a.publish(EventType.TASK_COMPLETED, {"n": n})
            slowest[0] = max(slowest[0], time.perf_counter() - t0)
            delay = start + n / 1500 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    assert held.wait(20)
    sent_before_kill = bridge_a.health()["sent"]
    server.kill()
    local_at_kill = len(local)
    assert wait_until(lambda: not bridge_a.connected, timeout=5)
    time.sleep(0.5)  # the broker stays down for a while; publishing goes on
    local_while_down = len(local) - local_at_kill
    server.start()
    back = time.monotonic()
    with server.client() as admin:
        persisted = admin.xlen("{faults}:events")
    assert persisted >= sent_before_kill  # appendfsync always: acknowledged XADDs survived
    release.set()
    publisher.join(30)
    assert wait_until(lambda: len(received) >= total, timeout=30)
    time.sleep(0.3)  # let any late duplicate show up

    health_a, health_b = bridge_a.health(), bridge_b.health()
    context = f"a={health_a} b={health_b} back={back} reconnected={reconnected}"
    numbers = _numbers(received)
    missing = sorted(set(range(total)) - set(numbers))
    assert numbers == list(range(total)), (missing[:20], len(numbers), context)
    assert local == list(range(total))
    # The held batch is either acknowledged on the restarted broker (its
    # pending state survived in the AOF) or redelivered and dropped as a
    # duplicate: never dispatched twice (checked above).
    assert set(reconnected) == {"a", "b"}, context
    assert reconnected["a"] - back < 2.0, context
    assert reconnected["b"] - back < 2.0, context
    # Local dispatch went on while the broker was down, and no publish ever
    # waited for it (a wait would last a socket timeout or a backoff: seconds).
    assert local_while_down > 100, context
    assert slowest[0] < 0.5, context
    assert health_a["disconnects"] >= 1, context
    assert health_a["reconnects"] == health_a["disconnects"], context
    assert health_a["outbox_dropped"] == 0, context
    assert len(disconnected) == health_a["disconnects"], context
    status = disconnected[0].data
    assert isinstance(status, BridgeStatus)
    assert status.error is not None
    assert "Connection" in status.error


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_outbox_overflow_reports_exact_drops(
    own_redis_server: RedisServer,
    make_bus: Callable[[str], EventBus],
    bridges: list[RedisBridge],
    policy: OutboxPolicy,
) -> None:
    """With the broker down, a full outbox drops exactly the overflow, by policy."""
    server = own_redis_server
    a, b = make_bus("a"), make_bus("b")
    got: list[Event[Any]] = []
    b.subscribe(EventType.TASK_COMPLETED, got.append)
    bridge_a = RedisBridge(
        a, server.url, "overflow", node_id="node-a", outbox_size=100, outbox_policy=policy
    )
    bridge_b = RedisBridge(b, server.url, "overflow", node_id="node-b")
    bridges += [bridge_a, bridge_b]
    bridge_a.start()
    bridge_b.start()
    a.publish(EventType.TASK_COMPLETED, {"n": -1})  # b knows a's sequence from here
    assert wait_until(lambda: len(got) == 1)
    server.kill()
    assert wait_until(lambda: bridge_a.state == "disconnected", timeout=5)
    for n in range(125):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    health = bridge_a.health()
    assert health["outbox_dropped"] == 25
    assert health["outbox_depth"] == 100
    assert a.stats()["sinks"][0]["dropped"] == 25
    assert len(a.history(EventType.TASK_COMPLETED)) == 126  # local delivery is unaffected
    server.start()
    assert wait_until(lambda: bridge_a.health()["sent"] == 101, timeout=10)
    a.publish(EventType.TASK_COMPLETED, {"n": 125})
    assert wait_until(lambda: len(got) == 102, timeout=10)
    kept = list(range(100)) if policy == "drop_newest" else list(range(25, 125))
    assert _numbers(got) == [-1, *kept, 125]
    assert bridge_b.health()["gaps"] == 25  # receivers see the loss too
    assert bridge_a.health()["sent"] == 102


def test_outbox_raise_policy_refuses_the_publish(
    own_redis_server: RedisServer, make_bus: Callable[[str], EventBus], bridges: list[RedisBridge]
) -> None:
    """policy="raise": the publish that would overflow raises and records nothing."""
    a = make_bus("a")
    bridge = RedisBridge(
        a, own_redis_server.url, "raise", node_id="n", outbox_size=10, outbox_policy="raise"
    )
    bridges.append(bridge)
    bridge.start()
    own_redis_server.kill()
    assert wait_until(lambda: bridge.state == "disconnected", timeout=5)
    for n in range(10):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    with pytest.raises(MiddlewareError) as info:
        a.publish(EventType.TASK_COMPLETED, {"n": 10})
    assert isinstance(info.value.__cause__, OutboxFullError)
    assert info.value.__cause__.capacity == 10
    assert len(a.history(EventType.TASK_COMPLETED)) == 10
    assert bridge.health()["outbox_dropped"] == 0


def test_stop_while_the_broker_is_down_counts_abandoned_events(
    own_redis_server: RedisServer, make_bus: Callable[[str], EventBus]
) -> None:
    """stop(timeout) gives up on an unreachable broker and says how many were not sent."""
    a = make_bus("a")
    bridge = RedisBridge(a, own_redis_server.url, "abandon", node_id="n")
    bridge.start()
    own_redis_server.kill()
    assert wait_until(lambda: bridge.state == "disconnected", timeout=5)
    for n in range(7):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    started = time.monotonic()
    bridge.stop(timeout=0.3)
    assert time.monotonic() - started < 5
    assert bridge.health()["abandoned"] == 7
    assert bridge.state == "stopped"


def test_stop_with_nothing_to_send_does_not_wait_for_an_unreachable_broker(
    own_redis_server: RedisServer, make_bus: Callable[[str], EventBus]
) -> None:
    """With an empty outbox, stop(timeout) returns promptly whether the broker was never reached
    or went away: there is nothing to drain, so nothing to wait for."""
    url = own_redis_server.url
    own_redis_server.kill()
    never = RedisBridge(make_bus("never"), url, "idle-stop", node_id="never")
    never.start(timeout=None)
    assert wait_until(lambda: never.health()["last_error"] is not None, timeout=5)
    started = time.monotonic()
    never.stop(timeout=10)
    assert time.monotonic() - started < 3, "stop waited for a broker it had nothing to send to"
    assert never.state == "stopped"
    own_redis_server.start()
    gone = RedisBridge(make_bus("gone"), url, "idle-stop", node_id="gone", block_ms=50)
    gone.start()
    own_redis_server.kill()
    assert wait_until(lambda: gone.state == "disconnected", timeout=5)
    started = time.monotonic()
    gone.stop(timeout=10)
    assert time.monotonic() - started < 3.5, "stop waited for a broker it had nothing to send to"
    assert gone.health()["abandoned"] == 0


ACL = (
    "ACL SETUSER atlas-bridge on >s3cret resetkeys ~{acl}:* resetchannels -@all "
    "+ping +xadd +xreadgroup +xack +xclaim +xpending +xinfo|groups +xinfo|stream +exists "
    "+xgroup|create +xgroup|setid +xgroup|destroy +xrevrange +evalsha +script|load "
    "+script|exists +client|setname"
)


def test_acl_user_limited_to_the_bridge_keys(
    own_redis_server: RedisServer, make_bus: Callable[[str], EventBus], bridges: list[RedisBridge]
) -> None:
    """The ACL from docs/cross-process.md is enough for a bridge and for nothing else."""
    admin = own_redis_server.client()
    raw: RawCommands = admin
    raw.execute_command(*ACL.split())
    url = f"redis://atlas-bridge:s3cret@127.0.0.1:{own_redis_server.port}/0"
    a, b = make_bus("a"), make_bus("b")
    got: list[Event[Any]] = []
    b.subscribe(EventType.TASK_COMPLETED, got.append)
    for bus, node in ((a, "node-a"), (b, "node-b")):
        bridge = RedisBridge(bus, url, "acl", node_id=node, replay_last=5)
        bridges.append(bridge)
        bridge.start()
    a.publish(EventType.TASK_COMPLETED, {"n": 1})
    assert wait_until(lambda: len(got) == 1)
    assert "s3cret" not in repr(bridges[0]) + str(bridges[0].health())
    limited = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.get("{other}:key")
    limited.close()
    outsider = RedisBridge(make_bus("c"), url, "other", node_id="n", backoff_max=0.1)
    with pytest.raises(BridgeConnectionError, match=r"(?i)no permissions"):
        outsider.start(timeout=1)
    admin.close()


def test_tls_connection_with_a_private_ca(
    tmp_path: Path, make_bus: Callable[[str], EventBus], bridges: list[RedisBridge]
) -> None:
    """rediss:// plus client_options (ssl_ca_certs) pass through to redis-py."""
    if OPENSSL is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("openssl is required when CI=true", pytrace=False)
        pytest.skip("openssl is not installed")
    ca, cert, key = make_tls_files(tmp_path / "tls")
    server = RedisServer(tmp_path / "redis", tls=(ca, cert, key))
    server.start()
    try:
        a, b = make_bus("a"), make_bus("b")
        got: list[Event[Any]] = []
        b.subscribe(EventType.TASK_COMPLETED, got.append)
        for bus, node in ((a, "node-a"), (b, "node-b")):
            bridge = RedisBridge(
                bus, server.url, "tls", node_id=node, client_options={"ssl_ca_certs": str(ca)}
            )
            bridges.append(bridge)
            bridge.start()
        a.publish(EventType.TASK_COMPLETED, {"n": 1})
        assert wait_until(lambda: len(got) == 1)
        assert server.url.startswith("rediss://")
        untrusted = RedisBridge(make_bus("c"), server.url, "tls", node_id="c", backoff_max=0.1)
        with pytest.raises(BridgeConnectionError, match=r"(?i)certificate"):
            untrusted.start(timeout=1)
    finally:
        for bridge in bridges:
            bridge.stop(timeout=1)
        server.kill()

"""RedisBridge on a real local Redis Cluster: any node's URL, failover, slot moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import BridgeStatus, RedisBridge
from atlas_events.exceptions import BridgeConnectionError

from .._cluster import LocalCluster
from .._support import RedisServer, wait_until

pytestmark = pytest.mark.redis

BridgeFactory = Callable[..., RedisBridge]


@pytest.fixture
def make_bridge() -> Iterator[BridgeFactory]:
    """Build started bridges (fast timings); stop them after the test."""
    bridges: list[RedisBridge] = []

    def make(bus: EventBus, url: str, namespace: str, node_id: str, **kw: Any) -> RedisBridge:
        kw.setdefault("block_ms", 100)
        kw.setdefault("backoff_max", 0.2)
        bridge = RedisBridge(bus, url, namespace, node_id=node_id, **kw)
        bridges.append(bridge)
        bridge.start(timeout=10)
        return bridge

    yield make
    for bridge in bridges:
        bridge.stop()


def _collect(bus: EventBus) -> list[Event[Any]]:
    got: list[Event[Any]] = []
    bus.subscribe(EventType.TASK_COMPLETED, got.append)
    return got


def test_every_node_url_reaches_the_stream(
    redis_cluster: LocalCluster, make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """Any primary, or a replica, works as the URL (redis-py follows MOVED)."""
    ns = "anynode"
    owner = redis_cluster.owner(f"{{{ns}}}:events")
    receiver = make_bus("receiver")
    got = _collect(receiver)
    make_bridge(receiver, f"redis://{owner.address}/0", ns, "receiver")
    for i, url in enumerate(redis_cluster.urls):
        bus = make_bus(f"n{i}")
        bridge = make_bridge(bus, url, ns, f"n{i}")
        assert bridge.connected
        bus.publish(EventType.TASK_COMPLETED, {"from": i})
    assert wait_until(lambda: len(got) == len(redis_cluster.urls), timeout=15)
    assert sorted(ev.data["from"] for ev in got) == list(range(len(redis_cluster.urls)))


def test_cluster_option_is_explicit_when_given(
    redis_cluster: LocalCluster,
    redis_server: RedisServer,
    make_bus: Callable[[str], EventBus],
    make_bridge: BridgeFactory,
) -> None:
    """cluster=True needs a cluster; cluster=False on a node that does not own the slot fails."""
    ns = "explicit"
    owner = redis_cluster.owner(f"{{{ns}}}:events")
    other = next(n for n in redis_cluster.primary_nodes() if n is not owner)
    bridge = make_bridge(make_bus("a"), f"redis://{other.address}/0", ns, "a", cluster=True)
    assert bridge.connected
    with pytest.raises(BridgeConnectionError, match="Moved"):
        RedisBridge(
            make_bus("b"), f"redis://{other.address}/0", ns, node_id="b", cluster=False
        ).start(timeout=3)
    with pytest.raises(BridgeConnectionError, match="Redis Cluster"):
        RedisBridge(make_bus("c"), redis_server.url, ns, node_id="c", cluster=True).start(timeout=3)


def test_dead_letters_and_trimming_losses_on_the_cluster(
    redis_cluster: LocalCluster, make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """Malformed entries are dead-lettered and trimmed events counted, as on one server."""
    ns = "faults"
    key, dead = f"{{{ns}}}:events", f"{{{ns}}}:dead"
    url = redis_cluster.urls[-1]  # a replica's URL
    sender = make_bus("sender")
    make_bridge(sender, url, ns, "sender")
    receiver = make_bus("receiver")
    bridge = make_bridge(receiver, url, ns, "receiver")
    with redis_cluster.client() as client:
        client.xadd(key, {"junk": "1"})
        assert wait_until(lambda: bridge.health()["dead_lettered"] == 1, timeout=10)
        assert wait_until(lambda: client.xlen(dead) == 2, timeout=10)  # each node's copy
        bridge.stop()
        for i in range(40):
            sender.publish(EventType.TASK_COMPLETED, {"i": i})
        assert wait_until(lambda: client.xlen(key) >= 41, timeout=10)
        client.xtrim(key, maxlen=0, approximate=False)
    again = make_bridge(make_bus("receiver2"), url, ns, "receiver")
    assert wait_until(lambda: again.health()["trimmed"] == 40, timeout=10)


def _publisher(bus: EventBus, total: int, every: float) -> tuple[threading.Thread, list[str]]:
    ids: list[str] = []

    def run() -> None:
        for i in range(total):
            ids.append(bus.publish(EventType.TASK_COMPLETED, {"i": i}))
            time.sleep(every)

    thread = threading.Thread(target=run, name="publisher", daemon=True)
    thread.start()
    return thread, ids


def _missing(got: list[Event[Any]], ids: list[str]) -> list[int]:
    """Positions (in publish order) of the events that did not arrive."""
    seen = {ev.id for ev in got}
    return [i for i, id_ in enumerate(ids) if id_ not in seen][:50]


def _reconnected(bus: EventBus) -> list[BridgeStatus]:
    seen: list[BridgeStatus] = []
    bus.subscribe(EventType.BRIDGE_RECONNECTED, lambda ev: seen.append(ev.data))
    return seen


def test_primary_killed_mid_run_fails_over_and_loses_nothing(
    own_redis_cluster: LocalCluster,
    make_bus: Callable[[str], EventBus],
    make_bridge: BridgeFactory,
) -> None:
    """Killing the stream's primary under traffic: every event arrives once, in order, and
    both bridges reconnect within cluster-node-timeout + election + backoff (< 15 s here)."""
    cluster = own_redis_cluster
    ns = "failover"
    key = f"{{{ns}}}:events"
    victim_url = f"redis://{cluster.owner(key).address}/0"  # the seed node dies too
    a, b = make_bus("a"), make_bus("b")
    reconnects_a, reconnects_b = _reconnected(a), _reconnected(b)
    got = _collect(b)
    # replica_acks=1: a batch counts as sent once the replica has it, so an
    # event acknowledged by the primary killed below cannot be lost.
    bridge_a = make_bridge(a, victim_url, ns, "a", outbox_size=100_000, replica_acks=1)
    bridge_b = make_bridge(b, victim_url, ns, "b")
    thread, ids = _publisher(a, 3000, 0.001)
    assert wait_until(lambda: len(got) >= 500, timeout=30)
    killed_at = time.monotonic()
    victim = cluster.kill_primary_of(key)
    cluster.wait_failover(key, victim)
    thread.join(60)
    assert wait_until(lambda: len(got) >= 3000, timeout=60), (
        len(got),
        bridge_a.health(),
        bridge_b.health(),
        _missing(got, ids),
    )
    assert wait_until(lambda: reconnects_a and reconnects_b, timeout=15)
    assert [ev.id for ev in got] == ids  # all of them, once each, in publish order
    assert bridge_b.health()["gaps"] == 0
    for status in (*reconnects_a, *reconnects_b):
        assert status.downtime is not None
        assert status.downtime < 15
    assert time.monotonic() - killed_at < 120


def test_slot_migration_under_traffic_loses_nothing(
    own_redis_cluster: LocalCluster,
    make_bus: Callable[[str], EventBus],
    make_bridge: BridgeFactory,
) -> None:
    """Moving the stream's slot to another primary while events flow: all arrive, in order."""
    cluster = own_redis_cluster
    ns = "reshard"
    key = f"{{{ns}}}:events"
    a, b = make_bus("a"), make_bus("b")
    got = _collect(b)
    make_bridge(a, cluster.url, ns, "a", outbox_size=100_000)
    bridge_b = make_bridge(b, cluster.urls[1], ns, "b")
    thread, ids = _publisher(a, 3000, 0.001)
    assert wait_until(lambda: len(got) >= 500, timeout=30)
    source = cluster.owner(key)
    target = next(n for n in cluster.primary_nodes() if n is not source)
    cluster.reshard(key, target, slots=20)
    assert cluster.owner(key) is target
    thread.join(60)
    assert wait_until(lambda: len(got) >= 3000, timeout=60), bridge_b.health()
    assert [ev.id for ev in got] == ids
    assert bridge_b.health()["gaps"] == 0


def test_replica_acks_wait_for_the_replicas_and_warn_when_short(
    redis_cluster: LocalCluster,
    make_bus: Callable[[str], EventBus],
    make_bridge: BridgeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """replica_acks=1 is met by the one replica; asking for 2 warns after replica_timeout."""
    ns = "acks"
    b = make_bus("b")
    got = _collect(b)
    make_bridge(b, redis_cluster.url, ns, "b")
    one = make_bus("one")
    make_bridge(one, redis_cluster.url, ns, "one", replica_acks=1)
    one.publish(EventType.TASK_COMPLETED, {"n": 1})
    assert wait_until(lambda: len(got) == 1, timeout=10)
    assert "replicas confirmed" not in caplog.text
    two = make_bus("two")
    make_bridge(two, redis_cluster.url, ns, "two", replica_acks=2, replica_timeout=0.2)
    two.publish(EventType.TASK_COMPLETED, {"n": 2})
    assert wait_until(lambda: len(got) == 2, timeout=10)
    assert wait_until(lambda: "1 of 2 replicas confirmed" in caplog.text, timeout=5)


def _bridge_connections(cluster: LocalCluster, node_id: str) -> list[str]:
    """``node:client name`` of every connection the bridge ``node_id`` holds, on any node."""
    found = []
    for node in cluster.live():
        with node.client(socket_timeout=2) as client:
            for entry in client.client_list():
                if str(entry.get("name", "")).startswith(f"atlas-bridge:{node_id}:"):
                    found.append(f"{node.address}:{entry['name']}")
    return found


def test_stop_closes_the_connections_on_every_node(
    redis_cluster: LocalCluster, make_bus: Callable[[str], EventBus]
) -> None:
    """After stop() no node holds a connection of the bridge's, none is left to the GC.

    redis-py's ``RedisCluster.from_url(...).close()`` leaves the nodes'
    connection pools open (each node's ``Redis`` was handed its pool); the
    bridge disconnects them itself.
    """
    ns, node_id = "closing", "closer"
    bus = make_bus("a")
    url = redis_cluster.urls[-1]  # a replica: the stream's primary is reached through it
    bridge = RedisBridge(bus, url, ns, node_id=node_id, block_ms=100).start(timeout=10)
    bus.publish(EventType.TASK_COMPLETED, {"n": 1})
    assert wait_until(lambda: bridge.health()["sent"] == 1, timeout=10)
    assert _bridge_connections(redis_cluster, node_id)
    bridge.stop()
    assert wait_until(lambda: not _bridge_connections(redis_cluster, node_id), timeout=5), (
        _bridge_connections(redis_cluster, node_id)
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [("cluster", "yes"), ("replica_acks", -1), ("replica_acks", 1.5), ("replica_timeout", 0)],
)
def test_cluster_options_are_validated(
    make_bus: Callable[[str], EventBus], option: str, value: object
) -> None:
    """Bad cluster options raise naming the option, before anything touches the bus."""
    bus = make_bus("a")
    options: dict[str, Any] = {option: value}
    with pytest.raises((TypeError, ValueError), match=option):
        RedisBridge(bus, **options)
    assert bus.stats()["sinks"] == []

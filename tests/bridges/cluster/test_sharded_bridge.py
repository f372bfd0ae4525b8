"""ShardedRedisBridge on a real local Redis Cluster (and on one server): routing, order,
streams read only where scopes live, per-stream dead letters and health."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import ShardedRedisBridge

from .._cluster import LocalCluster
from .._support import wait_until

pytestmark = pytest.mark.redis

Factory = Callable[..., ShardedRedisBridge]
SCOPES = ("agents", "tools", "billing", "search", "mail", "ui")


@pytest.fixture
def make_sharded() -> Iterator[Factory]:
    """Build started sharded bridges (fast timings); stop them after the test."""
    made: list[ShardedRedisBridge] = []

    def make(
        bus: EventBus, url: str, namespace: str, node_id: str, **kw: Any
    ) -> ShardedRedisBridge:
        kw.setdefault("block_ms", 100)
        kw.setdefault("shards", 3)
        bridge = ShardedRedisBridge(bus, url, namespace, node_id=node_id, **kw)
        made.append(bridge)
        bridge.start(timeout=15)
        return bridge

    yield make
    for bridge in made:
        bridge.stop()


def _collect(bus: EventBus) -> list[Event[Any]]:
    got: list[Event[Any]] = []
    bus.subscribe(EventType.TASK_COMPLETED, got.append)
    return got


def _publish_round_robin(bus: EventBus, per_scope: int) -> None:
    for n in range(per_scope):
        for name in SCOPES:
            bus.scope(name).publish(EventType.TASK_COMPLETED, {"scope": name, "n": n})


def test_streams_spread_over_the_primaries(
    redis_cluster: LocalCluster, make_bus: Callable[[str], EventBus], make_sharded: Factory
) -> None:
    """Three shards on three primaries: each stream is served by a different primary."""
    bridge = make_sharded(make_bus("a"), redis_cluster.url, "spread", "a")
    owners = {redis_cluster.owner(key).port for key in bridge.stream_keys}
    assert len(owners) == 3


def test_every_event_arrives_once_in_order_per_scope_on_its_stream(
    redis_cluster: LocalCluster, make_bus: Callable[[str], EventBus], make_sharded: Factory
) -> None:
    """Events go to their scope's stream only; each scope's events arrive in publish order."""
    ns = "routed"
    a, b = make_bus("a"), make_bus("b")
    got = _collect(b)
    sender = make_sharded(a, redis_cluster.urls[0], ns, "a")
    make_sharded(b, redis_cluster.urls[4], ns, "b")
    _publish_round_robin(a, 200)
    total = 200 * len(SCOPES)
    assert wait_until(lambda: len(got) == total, timeout=30)
    for name in SCOPES:
        assert [ev.data["n"] for ev in got if ev.data["scope"] == name] == list(range(200))
        assert all(
            ev.scope == (name,) and ev.origin == "a" for ev in got if ev.data["scope"] == name
        )
    with redis_cluster.client() as client:
        for i, key in enumerate(sender.stream_keys):
            scopes = {
                e[1][b"e"].split(b'"scope":"')[1].split(b'"')[0].decode()
                for e in client.xrange(key)
            }
            assert all(sender.layout.index_of_key(s) == i for s in scopes), (key, scopes)
    health = sender.health()
    assert health["totals"]["sent"] == total
    assert [h["stream"] for h in health["streams"]] == list(sender.stream_keys)
    assert sum(h["sent"] for h in health["streams"]) == total


def test_a_node_reads_only_the_streams_of_its_scopes(
    redis_cluster: LocalCluster, make_bus: Callable[[str], EventBus], make_sharded: Factory
) -> None:
    """read_scopes: no consumer group, no reads, on the other streams; its scopes arrive."""
    ns = "partial"
    a, c = make_bus("a"), make_bus("c")
    got = _collect(c)
    sender = make_sharded(a, redis_cluster.url, ns, "a")
    reader = make_sharded(c, redis_cluster.url, ns, "c", read_scopes=["agents/planner"])
    wanted = sender.layout.index_of_key("agents")
    assert reader.reading == {wanted}
    _publish_round_robin(a, 50)
    assert wait_until(
        lambda: sum(1 for ev in got if ev.data["scope"] == "agents") == 50, timeout=30
    )
    assert {sender.layout.index_of_key(ev.data["scope"]) for ev in got} == {wanted}
    with redis_cluster.client() as client:
        for i, key in enumerate(sender.stream_keys):
            groups = {g["name"].decode() for g in client.xinfo_groups(key)}
            assert ("c" in groups) == (i == wanted), (key, groups)
    received = [h["received"] for h in reader.health()["streams"]]
    assert all(r == 0 for i, r in enumerate(received) if i != wanted)


def test_dead_letters_are_per_stream(
    redis_cluster: LocalCluster, make_bus: Callable[[str], EventBus], make_sharded: Factory
) -> None:
    """A malformed entry on one stream is dead-lettered to that stream's dead-letter stream."""
    ns = "deadshard"
    bridge = make_sharded(make_bus("b"), redis_cluster.url, ns, "b")
    key = bridge.stream_keys[1]
    dead = key.replace(":events", ":dead")
    with redis_cluster.client() as client:
        client.xadd(key, {"junk": "1"})
        assert wait_until(lambda: bridge.health()["totals"]["dead_lettered"] == 1, timeout=10)
        assert [h["dead_lettered"] for h in bridge.health()["streams"]] == [0, 1, 0]
        assert client.xlen(dead) == 1


def test_sharding_works_on_one_server(
    redis_url: str, make_bus: Callable[[str], EventBus], make_sharded: Factory
) -> None:
    """Without a cluster the streams share one server; routing and order are the same."""
    a, b = make_bus("a"), make_bus("b")
    got = _collect(b)
    make_sharded(a, redis_url, "oneserver", "a", shards=4)
    make_sharded(b, redis_url, "oneserver", "b", shards=4)
    _publish_round_robin(a, 20)
    assert wait_until(lambda: len(got) == 20 * len(SCOPES), timeout=20)
    for name in SCOPES:
        assert [ev.data["n"] for ev in got if ev.data["scope"] == name] == list(range(20))

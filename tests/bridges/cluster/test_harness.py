"""The local cluster harness itself: creation, failover and slot moves on real processes."""

from __future__ import annotations

from pathlib import Path

from redis.crc import key_slot

from .._cluster import LocalCluster


def test_cluster_serves_all_slots_with_a_replica_each(redis_cluster: LocalCluster) -> None:
    """Three primaries own all 16384 slots and each has one synced replica."""
    primaries = redis_cluster.primary_nodes()
    assert len(primaries) == 3
    for node in primaries:
        info = node.info("replication")
        assert info["role"] == "master"
        assert info["connected_slaves"] == 1
    with redis_cluster.client() as client:
        assert client.set("{harness}:k", "v")
        assert client.get("{harness}:k") == b"v"


def test_kill_primary_promotes_its_replica_with_the_data(own_redis_cluster: LocalCluster) -> None:
    """Killing a primary promotes its replica, which holds the writes replicated before."""
    key = "{harness}:stream"
    with own_redis_cluster.client() as client:
        for i in range(50):
            client.xadd(key, {"i": str(i)})
        own_redis_cluster.wait_replicated(key)
        victim = own_redis_cluster.kill_primary_of(key)
        waited = own_redis_cluster.wait_failover(key, victim)
        assert waited < 30
        assert own_redis_cluster.owner(key) is not victim
        assert own_redis_cluster.owner(key).info("replication")["role"] == "master"
    with own_redis_cluster.client() as fresh:
        assert fresh.xlen(key) == 50


def test_reshard_moves_the_slot_with_its_keys(own_redis_cluster: LocalCluster) -> None:
    """A slot move hands the key's slot, and its data, to the target primary."""
    key = "{harness}:stream"
    with own_redis_cluster.client() as client:
        client.xadd(key, {"i": "0"})
        source = own_redis_cluster.owner(key)
        target = next(n for n in own_redis_cluster.primary_nodes() if n is not source)
        own_redis_cluster.reshard(key, target, slots=10)
        assert own_redis_cluster.owner(key) is target
        with target.client() as direct:
            assert direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(key.encode())) == 1
        assert client.xlen(key) == 1  # the cluster client follows MOVED


def test_a_one_primary_cluster_is_built_by_hand(tmp_path: Path) -> None:
    """1 primary + 1 replica (redis-cli refuses fewer than 3 primaries): all slots, synced."""
    cluster = LocalCluster(tmp_path / "one", primaries=1, replicas=1)
    cluster.start()
    try:
        assert len(cluster.primary_nodes()) == 1
        with cluster.client() as client:
            assert client.xadd("{one}:s", {"a": "1"})
            assert client.wait(1, 2000) == 1  # the replica follows
    finally:
        cluster.stop()

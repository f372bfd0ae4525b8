"""``atlas-events demo --redis URL`` with a Redis Cluster node's URL."""

from __future__ import annotations

import io

import pytest

from atlas_events.bridges.demo import run_redis_demo

from .._cluster import LocalCluster

pytestmark = pytest.mark.redis


def test_demo_runs_through_a_cluster_from_a_node_without_the_slot(
    redis_cluster: LocalCluster,
) -> None:
    """Any node's URL works for the demo (planner and worker), and it cleans up its streams."""
    url = redis_cluster.urls[-1]  # a replica: never the owner of the demo's slot
    out = io.StringIO()
    assert run_redis_demo(url, out) == 0, out.getvalue()
    text = out.getvalue()
    assert text.count("parent=ok") == 5
    assert text.rstrip().endswith("ok")
    with redis_cluster.client() as client:
        assert not [k for k in client.keys(target_nodes="primaries") if b"demo" in k]

"""Fixtures for the Redis Cluster tests: a real local cluster, never a mock.

``redis_cluster`` is one cluster of 3 primaries + 3 replicas for the session
(tests use their own namespaces); ``own_redis_cluster`` is a cluster for one
test, which may kill a primary or move slots. Without ``redis-server`` or
``redis-cli`` the tests are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .._cluster import REDIS_CLI, LocalCluster
from .._support import REDIS_SERVER


def _require_cluster_tools() -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server and redis-cli are required when CI=true", pytrace=False)
        pytest.skip("redis-server or redis-cli is not installed")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One local Redis Cluster (3 primaries, 3 replicas) for the session."""
    _require_cluster_tools()
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_redis_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A local Redis Cluster for one test, which may kill nodes or move slots."""
    _require_cluster_tools()
    cluster = LocalCluster(tmp_path / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()

"""Fixtures for the bridge tests: real redis-server processes, never mocks.

Each session starts its own ``redis-server`` on a free loopback port (with
``appendonly yes`` and ``appendfsync always`` in a temporary directory);
tests that kill the broker start a server of their own. Without a
``redis-server`` binary the tests are skipped, except under ``CI=true``,
where they fail.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from atlas_events import EventBus

from ._cluster import ClusterAsServer, LocalCluster
from ._support import REDIS_SERVER, RedisServer

_names = itertools.count()


def _require_redis_server() -> None:
    if REDIS_SERVER is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is required when CI=true", pytrace=False)
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (tests use their own namespaces).

    With ``ATLAS_TEST_CLUSTER=1``: a local Redis Cluster (3 primaries + 3
    replicas) instead, reached through a replica's URL.
    """
    _require_redis_server()
    server: RedisServer
    if os.environ.get("ATLAS_TEST_CLUSTER") == "1":  # the same tests on a local Redis Cluster
        cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster-shared"))
        cluster.start()
        server = cast(RedisServer, ClusterAsServer(cluster))
    else:
        server = RedisServer(tmp_path_factory.mktemp("redis-shared"))
        server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test, which may kill and restart it."""
    _require_redis_server()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    """A namespace (so a stream) of this test's own."""
    return f"t{os.getpid()}x{next(_names)}"


@pytest.fixture
def make_bus() -> Iterator[Callable[[str], EventBus]]:
    """Build buses that are closed after the test."""
    buses: list[EventBus] = []

    def make(name: str) -> EventBus:
        bus = EventBus(name=name)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()

"""The connection seam: every URL scheme redis-py takes connects."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import RedisBridge

from ._support import REDIS_SERVER, wait_until
from .conftest import _require_redis_server


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server listening only on a unix socket; yields its ``unix://`` URL."""
    _require_redis_server()
    path = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [
            str(REDIS_SERVER),
            "--port",
            "0",
            "--unixsocket",
            str(path),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"unix://{path}?db=0"
        client = redis.Redis.from_url(url)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except (redis.ConnectionError, OSError):
                return False

        assert wait_until(ready, timeout=10)
        client.close()
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def test_two_bridges_talk_over_a_unix_socket(
    unix_redis: str, make_bus: Callable[[str], EventBus]
) -> None:
    """A ``unix://`` URL connects (the bridge's TCP-only socket options are left out for it)."""
    bus_a, bus_b = make_bus("a"), make_bus("b")
    got: list[Event[Any]] = []
    bus_b.subscribe(EventType.TASK_STARTED, got.append)
    with (
        RedisBridge(bus_a, unix_redis, namespace="unix", node_id="a", block_ms=50),
        RedisBridge(bus_b, unix_redis, namespace="unix", node_id="b", block_ms=50),
    ):
        bus_a.publish(EventType.TASK_STARTED, {"i": 1})
        assert wait_until(lambda: len(got) == 1, timeout=10)
    assert got[0].data == {"i": 1}

"""Three OS processes share one mesh through one Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._support import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NODE = Path(__file__).with_name("_node.py")


def test_three_processes_exchange_every_event_exactly_once_in_order(
    redis_server: RedisServer, namespace: str
) -> None:
    """3 processes x 10,000 events: each gets the others' events once, in order, none of its own."""
    count, names = 10_000, ["p0", "p1", "p2"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(NODE), redis_server.url, namespace, name, str(count), "3"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:  # every group exists before anyone publishes
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=150)
            assert proc.returncode == 0
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for report in reports:
        me = report["node"]
        received = report["received"]
        others = {"p0", "p1", "p2"} - {me}
        assert set(received) == others | {"local"}, me
        assert received["local"] == list(range(count))  # its own, locally, once
        for origin in others:
            assert received[origin] == list(range(count)), (me, origin)
        health = report["health"]
        assert health["delivered"] == 2 * count
        assert health["own_skipped"] == count
        assert health["sent"] == count
        assert health["outbox_dropped"] == 0
        assert health["dead_lettered"] == 0
        assert health["gaps"] == 0

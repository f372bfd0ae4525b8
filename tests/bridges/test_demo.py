"""The two-process demo behind ``atlas-events demo --redis URL``."""

from __future__ import annotations

import io

import pytest

from atlas_events.bridges.demo import run_redis_demo

from ._support import free_port

pytestmark = pytest.mark.redis


def test_demo_runs_two_processes_through_redis(redis_url: str) -> None:
    """Every task gets its answer from the worker process, linked by parent and correlation."""
    out = io.StringIO()
    assert run_redis_demo(redis_url, out) == 0
    text = out.getvalue()
    assert text.count("parent=ok") == 5
    assert "MISMATCH" not in text
    assert text.rstrip().endswith("ok")
    planner = next(line for line in text.splitlines() if line.strip().startswith("planner:"))
    worker = next(line for line in text.splitlines() if line.strip().startswith("worker:"))
    for field in ("sent", "received", "delivered", "own skipped", "duplicates", "dead lettered"):
        assert f"{field} " in planner
        assert f"{field} " in worker  # the worker reports the same counters as the planner
    assert "?" not in worker


def test_demo_reports_an_unreachable_broker() -> None:
    """No broker: a clear message and exit code 2, no worker left behind."""
    out = io.StringIO()
    assert run_redis_demo(f"redis://127.0.0.1:{free_port()}/0", out) == 2
    assert "cannot reach Redis" in out.getvalue()

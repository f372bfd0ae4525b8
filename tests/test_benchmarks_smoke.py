"""Smoke test of the benchmark suite: it runs, and measures what it claims to.

Runs every scenario in quick mode (a few dozen events each) and checks the
shape of the report, never the speed: figures on a shared machine are not
test material.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import peers
from benchmarks import run as bench_run
from benchmarks._timing import Settings
from benchmarks.peers import IMPLEMENTATIONS, BenchType, Implementation
from benchmarks.scenarios import SCENARIOS

IMPL_NAMES = {kind.name for kind in IMPLEMENTATIONS}


def _counting_handlers(n: int) -> tuple[list[Callable[[object], None]], list[int]]:
    counts = [0] * n

    def make(i: int) -> Callable[[object], None]:
        def handler(data: object) -> None:
            counts[i] += 1

        return handler

    return [make(i) for i in range(n)], counts


@pytest.mark.parametrize("kind", IMPLEMENTATIONS, ids=lambda k: k.name)
def test_every_implementation_delivers_each_event_to_each_handler(
    kind: type[Implementation],
) -> None:
    """The loops really publish: fan-out, round-robin and scoped deliver as described."""
    impl = kind()
    try:
        handlers, counts = _counting_handlers(3)
        impl.fanout(handlers, {"x": 1})(7)
        assert counts == [7, 7, 7]

        handlers, counts = _counting_handlers(4)
        impl.round_robin(list(BenchType)[:4], handlers, {"x": 1})(8)
        assert counts == [2, 2, 2, 2]

        handlers, counts = _counting_handlers(3)
        impl.scoped(handlers, {"x": 1})(5)
        assert counts == [5, 5, 5]
    finally:
        impl.close()


def test_quick_suite_reports_every_scenario_goal_and_memory_figure() -> None:
    """A quick run covers every scenario and implementation with finite figures."""
    report = bench_run.run_suite(Settings.quick_mode(), echo=False)

    assert [s["name"] for s in report["scenarios"]] == list(SCENARIOS)
    for scenario in report["scenarios"]:
        assert scenario["rows"], scenario["name"]
        for name, row in scenario["rows"].items():
            assert math.isfinite(row["ns"]), (scenario["name"], name)
            assert row["ns"] > 0, (scenario["name"], name)
            assert len(row["runs"]) == 2
            assert row["ratio_to_blinker"] is not None
    for name in ("subs_0", "subs_1", "subs_10", "subs_100", "types_100", "scoped_2", "threads_2"):
        (scenario,) = (s for s in report["scenarios"] if s["name"] == name)
        assert set(scenario["rows"]) >= IMPL_NAMES, name

    goals = {g["goal"].split(" (")[0]: g for g in report["goals"]}
    assert "1 subscriber / raw send" in goals
    assert "two threads / one thread" in goals
    assert any(k.startswith("faster than pyee") for k in goals)
    assert all(isinstance(g["met"], bool) or g["met"] is None for g in goals.values())

    memory = report["memory"]
    assert memory is not None
    assert memory["event_getsizeof"] > 0
    assert 0 < memory["traced_bytes_per_event"] < 10_000


def test_command_line_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m benchmarks --quick --json FILE`` prints tables and writes the report."""
    out = tmp_path / "bench.json"
    assert bench_run.main(["--quick", "--only", "subs_1,features", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== subs_1" in printed
    assert "== goals" in printed
    data = json.loads(out.read_text())
    assert [s["name"] for s in data["scenarios"]] == ["subs_1", "features"]
    assert data["meta"]["quick"] is True


def test_a_baseline_copy_is_measured_beside_the_working_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--baseline DIR`` loads a second atlas_events and measures it in the same rounds."""
    monkeypatch.setattr(peers, "IMPLEMENTATIONS", peers.IMPLEMENTATIONS)
    monkeypatch.setattr(peers.AtlasBaseline, "bus_class", peers.AtlasBaseline.bus_class)
    repo = Path(__file__).resolve().parents[1]
    peers.load_baseline(repo)
    assert peers.AtlasBaseline.bus_class.__module__.startswith("_atlas_events_baseline")

    report = bench_run.run_suite(
        Settings.quick_mode(), memory=False, echo=False, names=["subs_1", "scoped_2"]
    )
    for scenario in report["scenarios"]:
        assert {"atlas-events", "atlas-events (baseline)"} <= set(scenario["rows"])

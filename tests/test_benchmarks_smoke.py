"""Smoke test of the benchmark suite: it runs, and measures what it claims to.

Runs every scenario in quick mode (a few dozen events each) and checks the
shape of the report, never the speed: figures on a shared machine are not
test material.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from benchmarks import markdown, peers, stalls, threads
from benchmarks import run as bench_run
from benchmarks._timing import Settings
from benchmarks.peers import IMPLEMENTATIONS, Atlas, BenchType, Implementation
from benchmarks.scenarios import SCENARIOS

IMPL_NAMES = {kind.name for kind in IMPLEMENTATIONS}
T = TypeVar("T")


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
            assert len(row["runs"]) == (1 if scenario["name"] == "stalls" else 2)
            if scenario["name"] != "stalls":  # latencies: no blinker row to compare with
                assert row["ratio_to_blinker"] is not None
    for name in ("subs_0", "subs_1", "subs_10", "subs_100", "types_100", "scoped_2", "threads"):
        (scenario,) = (s for s in report["scenarios"] if s["name"] == name)
        assert set(scenario["rows"]) >= IMPL_NAMES, name

    goals = {g["goal"].split(" (")[0]: g for g in report["goals"]}
    assert "1 subscriber / raw send" in goals
    assert "2 threads, one bus / one thread" in goals
    assert "4 threads, one bus / one thread" in goals
    assert "worst publish" in goals
    assert any(k.startswith("faster than pyee") for k in goals)
    assert all(isinstance(g["met"], bool) for g in goals.values())

    memory = report["memory"]
    assert memory is not None
    figures = memory["atlas-events"]
    assert figures["event_getsizeof"] > 0
    assert 0 < figures["traced_bytes_per_event"] < 10_000
    assert figures["gc_retained_events"] == Settings.quick_mode().stall_history
    assert figures["gc_tracked_objects_per_event"] >= 1
    assert figures["gc_full_collect_ms"] > 0


def test_threads_scenario_measures_every_configuration() -> None:
    """1, 2 and 4 threads on one bus and on one bus each, with context switches, per row."""
    res = threads.threads(Settings.quick_mode())
    labels = [label for label, *_ in threads.CONFIGS]
    for name in IMPL_NAMES:
        ratios = res["extra"]["throughput_vs_one_thread"][name]
        assert list(ratios) == labels[1:]
        assert all(r > 0 for r in ratios.values())
        switches = res["extra"]["context_switches_per_1000_events"][name]
        assert list(switches) == labels
        assert all(v >= 0 for v in switches.values())


def test_run_threads_really_runs_every_loop_in_its_own_thread() -> None:
    """Each loop is called once, with its share, from a thread of its own, all at once."""
    calls: list[tuple[int, int]] = []

    def loop(n: int) -> None:
        calls.append((threading.get_ident(), n))

    wall, cpu, voluntary, involuntary = threads.run_threads([loop, loop, loop], 7)
    assert wall >= 0
    assert cpu >= 0
    assert voluntary >= 0
    assert involuntary >= 0
    assert [n for _, n in calls] == [7, 7, 7]
    assert len({ident for ident, _ in calls}) == 3
    assert threading.get_ident() not in {ident for ident, _ in calls}


def test_stalls_scenario_reports_each_operation_and_the_references() -> None:
    """Every operation (and both reference rows) has a window figure; the history was full."""
    res = stalls.stalls(Settings.quick_mode())
    rows = {row.split(": ", 1)[1] for row in res["rows"] if row.startswith("atlas-events: ")}
    assert rows == set(stalls.OPS)
    per_op = res["extra"]["per_operation"]
    for row, fig in per_op.items():
        assert fig["publishes"] > 0, row
        if "idle" not in row:
            assert fig["op_runs"] >= 1, row
    assert per_op[f"atlas-events: {stalls.ONCE}"]["op_runs"] == 1


def test_stalls_window_sees_a_publisher_blocked_by_a_lock() -> None:
    """The measure works: an operation holding the bus for 30 ms shows as a >= 20 ms publish."""
    bench = stalls._Bench(Atlas(), Settings.quick_mode())
    lock = threading.Lock()
    bench.bus.add_middleware(lambda e: _through(lock, e))

    def hold(_: object) -> None:
        with lock:
            time.sleep(0.03)

    try:
        fig = stalls._window(bench, hold, 0.1, once=True)
    finally:
        bench.bus.close()
    assert fig["worst_ms"] >= 20
    assert fig["slow_publishes"] >= 1


def _through(lock: threading.Lock, event: T) -> T:
    with lock:
        return event


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
    if not (repo / "atlas_events" / "__init__.py").is_file():
        pytest.skip("no source tree to load a second copy from (suite run against an install)")
    peers.load_baseline(repo)
    assert peers.AtlasBaseline.bus_class.__module__.startswith("_atlas_events_baseline")

    report = bench_run.run_suite(
        Settings.quick_mode(), echo=False, names=["subs_1", "scoped_2", "threads", "stalls"]
    )
    for scenario in report["scenarios"]:
        rows = {row.split(": ")[0] for row in scenario["rows"]}
        assert {"atlas-events", "atlas-events (baseline)"} <= rows, scenario["name"]
    assert report["memory"] is not None
    assert set(report["memory"]) == {"atlas-events", "atlas-events (baseline)"}
    goals = [g["goal"] for g in report["goals"]]
    assert any(g.startswith("1 subscriber / the baseline copy") for g in goals)


def test_markdown_tables_carry_load_and_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m benchmarks.markdown FILE`` renders the docs' tables with load and command."""
    out = tmp_path / "bench.json"
    argv = ["--quick", "--only", "subs_1,threads,stalls", "--json", str(out)]
    assert bench_run.main(argv) == 0
    capsys.readouterr()
    assert markdown.main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "load average (1, 5, 15 min)" in text
    assert f"Command: `python -m benchmarks {' '.join(argv)}`" in text
    assert "| subs_1 |" in text
    assert "| atlas-events | " in text  # the threads table
    assert "| history(limit=10) |" in text  # the stalls table
    assert "Memory and GC" in text
    assert "| goal | target | value |" in text

"""Run the benchmark suite: ``python -m benchmarks [--quick] [--only NAME,...]``.

Prints one table per scenario (ns/event, and the ratio to raw
``blinker.Signal.send`` measured in the same scenario), the issue's goals
with the measured figures, and a memory report; writes everything as JSON to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal, TypedDict

import atlas_events

from ._timing import Settings
from .memory import MemoryReport, memory_report
from .peers import PEERS, Atlas, AtlasBaseline, Blinker, PlainLoop, load_baseline
from .scenarios import SCENARIOS, ScenarioResult

__all__ = ["Goal", "Report", "evaluate_goals", "main", "run_suite"]

RESULTS_DIR = Path(__file__).parent / "results"
ATLAS = Atlas.name
BLINKER = Blinker.name
SLOWER_PEERS = ("pyee emit", "PyPubSub", "PyDispatcher")


class Goal(TypedDict):
    goal: str
    value: float
    value_from_minimums: float | None
    target: str
    met: bool


class Report(TypedDict):
    meta: dict[str, Any]
    scenarios: list[ScenarioResult]
    goals: list[Goal]
    memory: MemoryReport | None


def _meta(settings: Settings) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("atlas-events", "blinker", "pyee", "Pypubsub", "PyDispatcher", "attrs"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            versions[dist] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:  # pragma: no cover
        commit = ""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover - not Linux
        cpu = platform.processor()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_start": _loadavg(),
        "compiled": bool(getattr(atlas_events, "compiled", False)),
        "baseline": (
            str(Path(sys.modules["_atlas_events_baseline"].__file__ or "").parent)
            if "_atlas_events_baseline" in sys.modules
            else None
        ),
        "git_commit": commit,
        "atlas_events_path": str(Path(sys.modules["atlas_events"].__file__ or "").parent),
        "versions": versions,
        "repeats": settings.repeats,
        "quick": settings.quick,
        "clock": settings.clock,
        "target_s": settings.target_s,
        "thread_events": settings.thread_events,
        "stream_events": settings.stream_events,
    }


def _loadavg() -> tuple[float, float, float] | None:
    """The machine's load (what ``uptime`` prints): state it beside every figure."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


Stat = Literal["ns", "min_ns"]


def _ns(results: dict[str, ScenarioResult], scenario: str, row: str, stat: Stat) -> float | None:
    res = results.get(scenario)
    if res is None or row not in res["rows"]:
        return None
    return res["rows"][row][stat]


def _goal_values(results: dict[str, ScenarioResult], stat: Stat) -> list[tuple[str, float, str]]:
    """(goal, value, target) for each goal the run has figures for, from ``stat``."""
    out: list[tuple[str, float, str]] = []

    def ns(scenario: str, row: str) -> float | None:
        return _ns(results, scenario, row, stat)

    send1, a1, a0 = ns("subs_1", BLINKER), ns("subs_1", ATLAS), ns("subs_0", ATLAS)
    p1 = ns("subs_1", PlainLoop.name)
    if send1 and a1 is not None:
        # issue 13: <= 0.95 pure Python, <= 0.60 with the compiled build
        target = "<= 0.60" if getattr(atlas_events, "compiled", False) else "<= 0.95"
        out.append(("1 subscriber / raw send (1 receiver)", a1 / send1, target))
    if send1 and a0 is not None:
        out.append(("0 subscribers / raw send (1 receiver)", a0 / send1, "<= 0.50"))
    for n in (10, 100):
        an, pn = ns(f"subs_{n}", ATLAS), ns(f"subs_{n}", PlainLoop.name)
        if an is None or pn is None or a1 is None or p1 is None or pn <= p1:
            continue
        goal = f"per extra subscriber ({n} subs) / plain-loop cost per handler"
        out.append((goal, (an - a1) / (pn - p1), "<= 1.50"))
        if n == 100:
            out.append(("100 subscribers / plain loop", an / pn, "<= 6.00"))
    a100, a1t = ns("types_100", ATLAS), ns("types_100", f"{ATLAS} (1 type, same loop)")
    if a100 is not None and a1t:
        out.append(("100 types round-robin / 1 type", a100 / a1t, "<= 1.05"))
    th = results.get("threads")
    if th is not None:
        ratios = th["extra"]["throughput_vs_one_thread"][ATLAS]
        for label in ("2 threads, one bus", "4 threads, one bus"):
            out.append((f"{label} / one thread (events/s, median)", ratios[label], ">= 0.90"))
    base1 = ns("subs_1", AtlasBaseline.name)
    if a1 is not None and base1:
        out.append(("1 subscriber / the baseline copy (single-thread cost)", a1 / base1, "<= 1.03"))
    st = results.get("stalls")
    if st is not None:
        for row, fig in st["rows"].items():
            impl, _, op = row.partition(": ")
            if impl == ATLAS and "reference" not in op:
                out.append((f"worst publish (ms) during {op}", fig[stat] / 1e6, "<= 1.00"))
    s0, s3 = ns("streams_sync", f"{ATLAS} (0 streams)"), ns("streams_sync", f"{ATLAS} (3 streams)")
    if s0 is not None and s3 is not None:
        out.append(("publisher cost per attached stream (ns)", (s3 - s0) / 3, "<= 1000"))
    losses = []
    for name in ("subs_0", "subs_1", "subs_10", "subs_100", "types_100", "scoped_2", "threads"):
        res = results.get(name)
        if res is None:
            continue
        mine = res["rows"][ATLAS][stat]
        losses += [f"{name}: {peer}" for peer in SLOWER_PEERS if res["rows"][peer][stat] <= mine]
    if any(name in results for name in ("subs_0", "subs_1", "scoped_2")):
        out.append(
            (
                "faster than pyee, PyPubSub, PyDispatcher in every scenario"
                + (f" (slower in: {', '.join(losses)})" if losses else ""),
                float(len(losses)),
                "0 losses",
            )
        )
    return out


def _met(value: float, target: str) -> bool:
    if target == "0 losses":
        return value == 0
    op, _, bound = target.partition(" ")
    return value <= float(bound) if op == "<=" else value >= float(bound)


def evaluate_goals(results: dict[str, ScenarioResult]) -> list[Goal]:
    """The issue's goals from this run's medians (and, beside them, its minimums)."""
    mins = {goal.split(" (slower")[0]: v for goal, v, _ in _goal_values(results, "min_ns")}
    return [
        {
            "goal": goal,
            "value": value,
            "value_from_minimums": mins.get(goal.split(" (slower")[0]),
            "target": target,
            "met": _met(value, target),
        }
        for goal, value, target in _goal_values(results, "ns")
    ]


def _print_scenario(res: ScenarioResult) -> None:
    print(f"\n== {res['name']}: {res['title']}")
    width = max(len(name) for name in res["rows"]) + 2
    print(
        f"{'':{width}} {'median ' + res['unit']:>18} {'x blinker':>10}"
        f" {'min ' + res['unit']:>15} {'x blinker':>10}"
    )
    for name, row in res["rows"].items():
        ratio, low = row["ratio_to_blinker"], row["min_ratio_to_blinker"]
        ratio_s = f"{ratio:10.2f}" if ratio is not None else f"{'-':>10}"
        low_s = f"{low:10.2f}" if low is not None else f"{'-':>10}"
        print(f"{name:{width}} {row['ns']:18.0f} {ratio_s} {row['min_ns']:15.0f} {low_s}")
    for key, value in res["extra"].items():
        if isinstance(value, dict):
            print(f"  {key}:")
            for k, v in value.items():
                if isinstance(v, dict):
                    v = ", ".join(f"{kk}={vv:,.2f}" for kk, vv in v.items())
                else:
                    v = f"{v:,.2f}"
                print(f"    {k}: {v}")
        else:
            print(f"  {key}: {value:.3f}")


def _print_goals(goals: list[Goal]) -> None:
    print("\n== goals: value from medians (from minimums)")
    for g in goals:
        mark = "met" if g["met"] else "NOT MET"
        low = g["value_from_minimums"]
        low_s = "" if low is None else f" ({low:.3f})"
        print(f"  [{mark:>7}] {g['goal']}: {g['value']:.3f}{low_s} (target {g['target']})")


def _print_memory(mem: MemoryReport) -> None:
    print("\n== memory and GC")
    for impl, figures in mem.items():
        print(f"  {impl}:")
        for k, v in figures.items():
            print(f"    {k}: {v:,.1f}" if isinstance(v, float) else f"    {k}: {v:,}")


def run_suite(
    settings: Settings, *, memory: bool = True, echo: bool = True, names: list[str] | None = None
) -> Report:
    """Run the selected scenarios (all by default) and return the report."""
    meta = _meta(settings)
    results: dict[str, ScenarioResult] = {}
    for name in names or list(SCENARIOS):
        t0 = time.perf_counter()
        res = SCENARIOS[name](settings)
        res["extra"]["seconds"] = round(time.perf_counter() - t0, 2)
        results[name] = res
        if echo:
            _print_scenario(res)
    goals = evaluate_goals(results)
    mem = memory_report(settings) if memory else None
    if echo:
        _print_goals(goals)
        if mem is not None:
            _print_memory(mem)
    meta["loadavg_end"] = _loadavg()
    if echo:
        start, end = meta["loadavg_start"], meta["loadavg_end"]
        print(f"\nload average (1, 5, 15 min): start {start}, end {end}")
    return {"meta": meta, "scenarios": list(results.values()), "goals": goals, "memory": mem}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts (smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per scenario")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time per-event loops with the thread's CPU clock (default) or wall time",
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory report")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--no-json", action="store_true", help="do not write JSON")
    parser.add_argument(
        "--atlas-path", default=None, help="import atlas_events from this directory instead"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help="also measure the atlas_events package in DIR, in the same rounds",
    )
    args = parser.parse_args(argv)
    settings = Settings.quick_mode() if args.quick else Settings()
    settings = dataclasses.replace(settings, clock=args.clock)
    if args.repeats is not None:
        settings = dataclasses.replace(settings, repeats=args.repeats)
    if args.baseline:
        print(f"baseline: atlas_events from {load_baseline(args.baseline)}")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or None
    unknown = sorted(set(names or ()) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    print(
        f"atlas-events benchmarks: {len(PEERS)} peers, {settings.repeats} rounds per scenario,"
        f" {settings.clock} clock; load average {_loadavg()};"
        f" compiled={bool(getattr(atlas_events, 'compiled', False))};"
        f" atlas_events from {Path(sys.modules['atlas_events'].__file__ or '?').parent}"
    )
    report = run_suite(settings, memory=not args.no_memory, names=names)
    given = sys.argv[1:] if argv is None else argv
    report["meta"]["command"] = shlex.join(["python", "-m", "benchmarks", *given])
    if not args.no_json:
        path = args.json or RESULTS_DIR / (
            f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}{'-quick' if settings.quick else ''}.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nJSON written to {path}")
    return 0

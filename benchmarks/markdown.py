"""``python -m benchmarks.markdown FILE.json``: a run's report as the tables of docs/performance.md.

The docs' figures are pasted from this output, so every table carries the
run's date, commit, machine load and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .peers import Atlas, AtlasBaseline, Blinker
from .threads import CONFIGS

__all__ = ["main", "render"]

ATLAS, BASELINE, BLINKER = Atlas.name, AtlasBaseline.name, Blinker.name
PEER_COLUMNS = ("pyee emit", "PyPubSub", "PyDispatcher", "plain loop")
TIMES = "\N{MULTIPLICATION SIGN}"
PER_EVENT = ("subs_0", "subs_1", "subs_10", "subs_100", "types_100", "scoped_2")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _ratio(row: dict[str, Any] | None) -> str:
    if row is None or row["ratio_to_blinker"] is None:
        return ""
    return f"{row['ratio_to_blinker']:.2f}{TIMES} ({row['min_ratio_to_blinker']:.2f}{TIMES})"


def _load(meta: dict[str, Any]) -> str:
    def fmt(load: Sequence[float] | None) -> str:
        return "?" if not load else ", ".join(f"{x:.2f}" for x in load)

    start, end = fmt(meta.get("loadavg_start")), fmt(meta.get("loadavg_end"))
    return f"{start} at the start, {end} at the end"


def _header(meta: dict[str, Any]) -> list[str]:
    command = meta.get("command", "python -m benchmarks")
    return [
        f"Run of {meta['date']} (commit `{meta.get('git_commit', '?')}`,"
        f" Python {meta['python']}, {meta['cpus']} CPUs, {meta['cpu']},"
        f" compiled build: {meta.get('compiled', False)}); load average (1, 5, 15 min)"
        f" {_load(meta)}. Command: `{command}`.",
        "",
    ]


def _per_event(scenarios: dict[str, Any]) -> list[str]:
    header = ["scenario", "atlas-events", "baseline", "raw `send` ns", *PEER_COLUMNS]
    rows = []
    for name in PER_EVENT:
        res = scenarios.get(name)
        if res is None:
            continue
        r = res["rows"]
        send = r[BLINKER]
        rows.append(
            [
                name,
                _ratio(r.get(ATLAS)),
                _ratio(r.get(BASELINE)),
                f"{send['ns']:.0f} ({send['min_ns']:.0f})",
                *(_ratio(r.get(p)) for p in PEER_COLUMNS),
            ]
        )
    if not rows:
        return []
    return [
        "Ratio to raw `blinker.Signal.send` in the same scenario, median of the rounds"
        " (minimum in parentheses):",
        "",
        *_table(header, rows),
        "",
    ]


def _threads(res: dict[str, Any] | None) -> list[str]:
    if res is None:
        return []
    extra = res["extra"]
    labels = [label for label, *_ in CONFIGS]
    header = ["implementation", "1 thread: wall (CPU) ns/event", *labels[1:], "switches / 1,000"]
    rows = []
    for name, ratios in extra["throughput_vs_one_thread"].items():
        one = extra["one_thread_ns_per_event"][name]
        cpu = extra["cpu_per_event_vs_one_thread"][name]
        sw = extra["context_switches_per_1000_events"][name]
        rows.append(
            [
                name,
                f"{one['wall']:.0f} ({one['cpu']:.0f})",
                *(f"{ratios[lb]:.2f}{TIMES} (CPU {cpu[lb]:.2f}{TIMES})" for lb in labels[1:]),
                " / ".join(f"{sw[label]:.1f}" for label in labels[:3]),
            ]
        )
    return [
        f"Throughput relative to one thread doing the same {extra['events_per_configuration']:,}"
        " events (median of the rounds' ratios; in parentheses the process CPU per event"
        " relative to one thread's); context switches per 1,000 events with 1 / 2 / 4 threads"
        " on one bus:",
        "",
        *_table(header, rows),
        "",
    ]


def _stalls(res: dict[str, Any] | None) -> list[str]:
    if res is None:
        return []
    per_op = res["extra"]["per_operation"]
    impls: dict[str, dict[str, str]] = {}
    for row, fig in res["rows"].items():
        impl, _, op = row.partition(": ")
        extra = per_op[row]
        cell = f"{fig['ns'] / 1e6:.1f} ({extra['worst_ms_all_rounds']:.1f})"
        if extra["op_runs"]:
            cell += f"; op {extra['op_median_ms']:.1f}"
        impls.setdefault(impl, {})[op] = cell
    names = list(impls)
    ops = list(dict.fromkeys(op for cells in impls.values() for op in cells))
    rows = [[op, *(impls[n].get(op, "") for n in names)] for op in ops]
    return [
        f"Slowest publish, ms: median of the rounds' worst (worst of all rounds); `op`: the"
        f" operation's own median ms. History {res['extra']['history_limit']:,} events,"
        f" {res['extra']['types']:,} types subscribed, switch interval"
        f" {res['extra']['switch_interval_ms']:g} ms:",
        "",
        *_table(["operation", *names], rows),
        "",
    ]


def _memory(mem: dict[str, Any] | None) -> list[str]:
    if not mem:
        return []
    names = list(mem)
    keys = list(next(iter(mem.values())))
    rows = [[k, *(_num(mem[n][k]) for n in names)] for k in keys]
    return ["Memory and GC:", "", *_table(["figure", *names], rows), ""]


def _num(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def _goals(goals: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            g["goal"],
            g["target"],
            f"{g['value']:.2f}"
            + ("" if g["value_from_minimums"] is None else f" ({g['value_from_minimums']:.2f})"),
            "met" if g["met"] else "**not met**",
        ]
        for g in goals
    ]
    return [
        "Goals (from medians; from minimums in parentheses):",
        "",
        *_table(["goal", "target", "value", ""], rows),
        "",
    ]


def render(report: dict[str, Any]) -> str:
    """The Markdown tables of one run (``report``: the JSON the runner writes)."""
    scenarios = {s["name"]: s for s in report["scenarios"]}
    lines = _header(report["meta"])
    lines += _per_event(scenarios)
    lines += _threads(scenarios.get("threads"))
    lines += _stalls(scenarios.get("stalls"))
    lines += _memory(report.get("memory"))
    lines += _goals(report["goals"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.markdown", description=__doc__)
    parser.add_argument("report", type=Path, help="a JSON report from python -m benchmarks")
    args = parser.parse_args(argv)
    sys.stdout.write(render(json.loads(args.report.read_text())) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Smoke test of the stream fan-out benchmark: it runs and prints both figures and ratios."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import bench_streams


def test_bench_streams_runs_and_reports_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run prints the three rows, the ratios and the load (figures are not checked)."""
    assert bench_streams.main(["--streams", "3", "--events", "200", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    for text in (
        "atlas-events block streams",
        "call_soon_threadsafe fan-out",
        "one hop per event",
        "ratio atlas / call_soon_threadsafe fan-out",
        "load average",
    ):
        assert text in out


def test_each_fan_out_delivers_every_event() -> None:
    """Each measured function completes only when every consumer got every event."""
    for run in (bench_streams.run_atlas, bench_streams.run_baseline, bench_streams.run_one_hop):
        assert asyncio.run(asyncio.wait_for(run(4, 300), 60)) > 0


def test_bad_arguments_are_refused() -> None:
    """Zero streams, events or rounds is a usage error."""
    with pytest.raises(SystemExit):
        bench_streams.main(["--streams", "0"])

"""The demo (the README's first command) runs and shows every feature it promises."""

from __future__ import annotations

import io

from atlas_events.demo import DemoMesh, run_demo


def test_demo_narrates_every_section() -> None:
    """run_demo prints the timeline, middleware, scopes, history, tokens and stats."""
    out = io.StringIO()
    mesh = run_demo(out)
    text = out.getvalue()
    for heading in ("Timeline", "Middleware", "Scopes", "History", "Tokens", "Stats"):
        assert heading in text
    assert "'api_key': '***'" in text  # redaction middleware
    assert "HANDLER_ERROR" in text  # isolated handler failure
    assert "TASK_STARTED subscribers 1 -> 0" in text  # weak handler gone after gc
    assert "root has it: False" in text  # propagate=False
    assert mesh.bus.stats()["dropped_by_middleware"] == 1


def test_demo_mesh_is_reusable() -> None:
    """DemoMesh can run repeatedly (the dashboard's serve --demo does)."""
    mesh = DemoMesh()
    mesh.start()
    runs = [mesh.run_once() for _ in range(3)]
    mesh.stop()
    assert runs == ["run-1", "run-2", "run-3"]
    assert mesh.bus.stats()["runs_retained"] == 3
    assert len(mesh.bus.history(correlation_id="run-2")) > 10

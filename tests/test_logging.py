"""Structured logging: every record the library writes carries the atlas_* extra fields."""

from __future__ import annotations

import ast
import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events._logging import LOG_FIELDS, log_extra

PACKAGE = Path(__file__).resolve().parent.parent / "atlas_events"
# Modules whose log calls other branches are rewriting; they adopt log_extra
# when they land (remove them from here then).
PENDING = ("bridges",)
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def test_log_extra_fields() -> None:
    """log_extra maps an event to every field; without an event the event fields are None."""
    ev = Event.create(EventType.TASK_STARTED, correlation_id="run-1")
    extra = log_extra(ev, handler="mod.fn", bus="root")
    assert set(extra) == set(LOG_FIELDS)
    assert extra["atlas_event_id"] == ev.id
    assert extra["atlas_event_type"] == "EventType.TASK_STARTED"
    assert extra["atlas_scope"] == ""
    assert extra["atlas_correlation_id"] == "run-1"
    assert extra["atlas_handler"] == "mod.fn"
    assert extra["atlas_bus"] == "root"
    bare = log_extra(bus="b")
    assert set(bare) == set(LOG_FIELDS)
    assert bare["atlas_event_id"] is None
    assert bare["atlas_bus"] == "b"


def test_handler_failure_record_carries_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    """An unreported handler failure is logged with the event's id, type, scope and handler."""
    with EventBus(name="root") as bus:
        scope = bus.scope("agents")

        def broken(event: Event[Any]) -> None:
            raise ValueError("x")

        scope.subscribe(EventType.TASK_FAILED, broken)
        with caplog.at_level(logging.ERROR, logger="atlas_events"):
            event_id = scope.publish(EventType.TASK_FAILED, correlation_id="run-2")
    [record] = caplog.records
    assert record.atlas_event_id == event_id  # type: ignore[attr-defined]
    assert record.atlas_event_type == "EventType.TASK_FAILED"  # type: ignore[attr-defined]
    assert record.atlas_scope == "agents"  # type: ignore[attr-defined]
    assert record.atlas_correlation_id == "run-2"  # type: ignore[attr-defined]
    assert record.atlas_handler.endswith("broken")  # type: ignore[attr-defined]
    assert record.atlas_bus == "agents"  # type: ignore[attr-defined]


def _log_calls_without_extra(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    missing = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"log", "logger", "_log"}
            and not any(
                k.arg == "extra"
                and isinstance(k.value, ast.Call)
                and isinstance(k.value.func, ast.Name)
                and k.value.func.id == "log_extra"
                for k in node.keywords
            )
        ):
            missing.append(node.lineno)
    return missing


def test_every_log_call_passes_extra() -> None:
    """Each log call in the package passes extra=log_extra(...)."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in PENDING:
            continue
        if lines := _log_calls_without_extra(path):
            offenders[str(rel)] = lines
    assert offenders == {}


def test_loop_closed_record_names_the_event(caplog: pytest.LogCaptureFixture) -> None:
    """The "event loop is closed" warning carries the event that found the loop closed."""
    loop = asyncio.new_event_loop()
    loop.close()
    with EventBus(name="root") as bus:

        async def handler(event: Event[Any]) -> None:
            pass

        bus.subscribe(EventType.TASK_STARTED, handler, loop=loop)
        with caplog.at_level(logging.WARNING, logger="atlas_events"):
            event_id = bus.publish(EventType.TASK_STARTED, correlation_id="run-3")
    [record] = [r for r in caplog.records if "loop is closed" in r.getMessage()]
    assert record.atlas_event_id == event_id  # type: ignore[attr-defined]
    assert record.atlas_correlation_id == "run-3"  # type: ignore[attr-defined]
    assert record.atlas_handler.endswith("handler")  # type: ignore[attr-defined]

"""mypy catches payload mistakes made through typed event keys."""

from __future__ import annotations

import os
import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api")

HEADER = """
import attrs
from atlas_events import Event, EventBus, EventType, declare

@attrs.frozen
class TaskResult:
    task: str

TASK_DONE = declare(EventType.TASK_COMPLETED, TaskResult)
bus = EventBus()
"""


def _mypy(body: str) -> tuple[str, int]:
    code = HEADER + textwrap.dedent(body)
    out, err, status = mypy_api.run(
        ["--config-file", "", "--strict", "--no-incremental", "--cache-dir", os.devnull, "-c", code]
    )
    return out + err, status


def test_valid_typed_usage_passes() -> None:
    """Correct payloads and handler signatures type-check."""
    out, status = _mypy(
        """
        def on_done(e: Event[TaskResult]) -> None: ...
        bus.subscribe(TASK_DONE, on_done)
        bus.publish(TASK_DONE, TaskResult("a"))
        """
    )
    assert status == 0, out


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('bus.publish(TASK_DONE, "not a TaskResult")', 'expected "TaskResult'),
        ("bus.publish(TASK_DONE, 42)", 'expected "TaskResult'),
        (
            "def on_str(e: Event[str]) -> None: ...\nbus.subscribe(TASK_DONE, on_str)",
            "subscribe",
        ),
        ("names: list[Event[str]] = bus.history(TASK_DONE)", "TaskResult"),
        (
            "async def f() -> None:\n    x: Event[str] = await bus.wait_for(TASK_DONE)",
            "TaskResult",
        ),
        (
            "@bus.on(TASK_DONE)\ndef on_done(e: Event[TaskResult]) -> None: ...\non_done(42)",
            "on_done",
        ),
        # the decorator checks the handler against the key, like subscribe()
        ("@bus.on(TASK_DONE)\ndef on_str(e: Event[str]) -> None: ...", "TaskResult"),
        (
            "@bus.on(TASK_DONE, once=True)\nasync def on_int(e: Event[int]) -> None: ...",
            "TaskResult",
        ),
    ],
)
def test_wrong_payloads_are_type_errors(body: str, fragment: str) -> None:
    """A wrong payload or handler signature for a typed key is a mypy error."""
    out, status = _mypy(body)
    assert status == 1, out
    assert "error" in out, out
    assert fragment in out, out
    assert "Cannot infer" not in out, out

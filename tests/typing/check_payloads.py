"""Checked by ``mypy --strict`` (see pyproject's [tool.mypy] files): typed payloads.

Nothing here runs under pytest; it is the positive half of the typing tests.
The negative half (code mypy must reject) is in ``test_typing.py``.
"""

from __future__ import annotations

from typing import Any, assert_type

import attrs

from atlas_events import Event, EventBus, EventKey, EventType, declare


@attrs.frozen
class TaskResult:
    task: str
    ok: bool


TASK_DONE = declare(EventType.TASK_COMPLETED, TaskResult)
assert_type(TASK_DONE, EventKey[TaskResult])


def on_done(event: Event[TaskResult]) -> None:
    assert_type(event.data, TaskResult)  # a typed key's payload is never None
    assert_type(event.data.task, str)


def build() -> None:
    assert_type(Event.create(EventType.TASK_STARTED), Event[None])
    assert_type(Event.create(EventType.TASK_COMPLETED, TaskResult("t", True)), Event[TaskResult])
    assert_type(Event.create(EventType.TASK_STARTED).data, None)


def on_anything(event: Event[Any]) -> None:
    print(event.type)


def wire(bus: EventBus) -> None:
    bus.subscribe(TASK_DONE, on_done)
    bus.subscribe(TASK_DONE, on_anything)
    bus.subscribe(EventType.TASK_STARTED, on_anything)
    bus.publish(TASK_DONE, TaskResult("build", True))
    bus.publish(EventType.TASK_STARTED, {"anything": "goes"})
    event_id: str = bus.publish(TASK_DONE, TaskResult("x", False), source="t")
    print(event_id)

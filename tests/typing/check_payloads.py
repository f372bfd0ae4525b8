"""Checked by ``mypy --strict`` (see pyproject's [tool.mypy] files): typed payloads.

Nothing here runs under pytest; it is the positive half of the typing tests.
The negative half (code mypy must reject) is in ``test_typing.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, assert_type

import attrs

from atlas_events import Event, EventBus, EventKey, EventType, Subscription, declare, handles


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


def query(bus: EventBus) -> None:
    assert_type(bus.history(TASK_DONE), list[Event[TaskResult]])
    assert_type(bus.history(TASK_DONE, limit=3), list[Event[TaskResult]])
    assert_type(bus.history(EventType.TASK_STARTED), list[Event[Any]])
    assert_type(bus.history(), list[Event[Any]])
    for event in bus.history(TASK_DONE):
        assert_type(event.data.ok, bool)


async def wait(bus: EventBus) -> None:
    done = await bus.wait_for(TASK_DONE, where=lambda e: e.data.ok, timeout=1.0)
    assert_type(done, Event[TaskResult])
    assert_type(await bus.wait_for(EventType.TASK_STARTED), Event[Any])
    assert_type(bus.wait_for_sync(TASK_DONE), Event[TaskResult])


def decorate(bus: EventBus) -> None:
    @bus.on(TASK_DONE, once=True)
    def on_task(event: Event[TaskResult]) -> None:
        print(event.data.task)

    typed: Callable[[Event[TaskResult]], None] = on_task
    typed(Event.create(EventType.TASK_COMPLETED, TaskResult("t", True)))
    removed: int = bus.off(TASK_DONE, on_task)
    print(removed)

    class Component:
        @handles(EventType.TASK_STARTED, max_failures=3)
        def on_start(self, event: Event[Any]) -> None: ...

    token: Subscription = bus.subscribe_component(Component())
    print(token)

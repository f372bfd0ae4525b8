"""Declared payload types hold for remote events too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from atlas_events import Event, EventBus, EventType, declare
from atlas_events.bridges.codec import Codec
from atlas_events.bridges.redis import RedisBridge

from ._support import wait_until

pytestmark = pytest.mark.redis


@attrs.frozen
class TaskResult:
    task: str
    ok: bool


TASK_DONE = declare(EventType.TASK_COMPLETED, TaskResult)


def _codec() -> Codec:
    codec = Codec()
    codec.register_payload(TaskResult, "tests.TaskResult")
    return codec


def test_a_declared_key_refuses_remote_events_with_another_payload(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    a, b = make_bus("a"), make_bus("b")
    b.declare(TASK_DONE)
    got: list[TaskResult] = []

    def on_done(event: Event[TaskResult]) -> None:
        got.append(event.data)  # typed: a TaskResult, never None or a dict

    b.subscribe(TASK_DONE, on_done)
    others: list[Event[Any]] = []
    b.subscribe(EventType.TASK_STARTED, others.append)
    with (
        RedisBridge(b, redis_url, namespace, node_id="node-b", codec=_codec(), block_ms=100) as rb,
        RedisBridge(a, redis_url, namespace, node_id="node-a", codec=_codec(), block_ms=100),
    ):
        a.publish(EventType.TASK_COMPLETED, {"task": "untyped"})  # a did not declare it
        a.publish(TASK_DONE, TaskResult("typed", True))
        a.publish(EventType.TASK_STARTED, {"after": True})
        assert wait_until(lambda: len(others) == 1)
        health = rb.health()
    assert got == [TaskResult("typed", True)]
    assert all(isinstance(r, TaskResult) for r in got)
    assert health["dispatch_errors"] == 1  # the dict payload: refused, counted, acknowledged
    assert health["delivered"] == 2

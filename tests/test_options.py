"""Options and arguments are checked when given: type, range, finiteness, named in the error."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import Any

import attrs
import pytest

from atlas_events import Event, EventBus, EventType, InvalidOptionError
from atlas_events.exceptions import InvalidEventTypeError

ET = EventType
BAD_COUNTS: list[object] = [-1, 1.5, True, "3", None, math.nan, sys.maxsize + 1, 10**100]


@pytest.mark.parametrize("option", ["history_limit", "run_history_limit", "max_runs", "max_depth"])
@pytest.mark.parametrize("value", BAD_COUNTS)
def test_bus_count_options_are_refused_up_front(option: str, value: object) -> None:
    """Every count option refuses non-ints, bools, negatives and values beyond sys.maxsize."""
    with pytest.raises(InvalidOptionError, match=option) as info:
        EventBus(**{option: value})  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ValueError)
    assert info.value.option == option


@pytest.mark.parametrize("option", ["history_limit", "max_depth"])
def test_scope_options_are_checked_too(option: str) -> None:
    """A scope's options go through the same checks."""
    root = EventBus()
    with pytest.raises(InvalidOptionError, match=option):
        root.scope("s", **{option: -5})
    assert root.stats()["children"] == 0


def test_large_but_valid_limits_work() -> None:
    """sys.maxsize is a valid history limit (no OverflowError at first publish)."""
    bus = EventBus(history_limit=sys.maxsize, run_history_limit=sys.maxsize, max_runs=sys.maxsize)
    bus.publish(ET.TASK_STARTED, correlation_id="r")
    assert len(bus.history(correlation_id="r")) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"raise_handler_errors": 1}, InvalidOptionError),
        ({"name": 3}, InvalidOptionError),
        ({"nested": "sometimes"}, InvalidOptionError),
        ({"terminal_types": (1,)}, InvalidEventTypeError),
    ],
)
def test_other_bus_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Flags, names, modes and terminal types are checked too."""
    with pytest.raises(error):
        EventBus(**kwargs)


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
@pytest.mark.parametrize("option", ["limit", "since_seq"])
def test_history_query_numbers(option: str, value: Any) -> None:
    """history(limit=, since_seq=) refuse bad numbers before reading anything."""
    bus = EventBus()
    with pytest.raises(InvalidOptionError, match=option):
        bus.history(**{option: value})


def test_history_query_numbers_may_be_huge() -> None:
    """A query limit is only compared, so any int works (no upper bound)."""
    bus = EventBus()
    bus.publish(EventType.TASK_STARTED)
    assert len(bus.history(limit=10**30)) == 1
    assert bus.history(since_seq=10**30) == []


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, 1e300, True, "1"])
def test_publish_async_timeout(value: object) -> None:
    """publish_async(timeout=) must be a finite number of seconds > 0 (within TIMEOUT_MAX)."""
    bus = EventBus()

    async def main() -> None:
        await bus.publish_async(ET.TASK_STARTED, timeout=value)  # type: ignore[arg-type]

    with pytest.raises(InvalidOptionError, match="timeout"):
        asyncio.run(main())
    assert bus.history() == []  # refused before anything was recorded


def _forged(**changes: Any) -> Event[Any]:
    ev = Event.create(ET.TASK_STARTED, 1)
    for name, value in changes.items():
        object.__setattr__(ev, name, value)
    return ev


@pytest.mark.parametrize(
    "changes",
    [
        {"timestamp": math.nan},
        {"timestamp": math.inf},
        {"timestamp": "now"},
        {"timestamp": True},
        {"source": 3},
        {"metadata": [("k", "v")]},
        {"scope": ["a"]},
        {"scope": ("a", 1)},
        {"id": ""},
        {"correlation_id": 7},
        {"parent_id": b"x"},
        {"origin": 1.0},
        {"seq": "1"},
    ],
)
def test_publish_event_validates_the_prebuilt_event(changes: dict[str, Any]) -> None:
    """A forged or malformed event is refused before anything is recorded, at any scope level."""
    root = EventBus()
    child = root.scope("c")
    seen: list[Event[Any]] = []
    root.subscribe(ET.TASK_STARTED, seen.append)
    with pytest.raises((TypeError, ValueError)):
        child.publish_event(_forged(**changes))
    assert child.history() == root.history() == seen == []
    assert child.last_seq == root.last_seq == 0


def test_publish_event_accepts_what_create_and_evolve_build() -> None:
    """Events from Event.create and attrs.evolve pass the checks."""
    bus = EventBus()
    ev = Event.create(ET.TASK_STARTED, {"a": 1}, source="s", metadata={"k": 1})
    bus.publish_event(ev)
    bus.publish_event(attrs.evolve(ev, timestamp=time.time(), correlation_id="r"))
    assert [e.id for e in bus.history()] == [ev.id, ev.id]


def test_publish_event_inside_correlate_takes_the_block_id() -> None:
    """A prebuilt event without a correlation id joins the surrounding correlate() block."""
    from atlas_events import correlate

    bus = EventBus()
    with correlate("run-9"):
        bus.publish_event(Event.create(ET.TASK_STARTED))
        bus.publish_event(Event.create(ET.TASK_STARTED, correlation_id="own"))
    assert [e.correlation_id for e in bus.history()] == ["run-9", "own"]

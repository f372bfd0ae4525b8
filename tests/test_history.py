"""History: bounded retention, per-run history, and queries that scan from the newest end."""

from __future__ import annotations

import enum
import gc
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_events import ANY, EventBus, EventType, correlate
from atlas_events._history import History, Query, select

from .conftest import Color

ET = EventType
TYPES = [ET.TASK_STARTED, ET.TASK_COMPLETED, ET.AGENT_STARTED]


def _filled(n: int, limit: int) -> EventBus:
    bus = EventBus(history_limit=limit)
    root_types = TYPES
    for i in range(n):
        bus.publish(root_types[i % 3], i, source=f"s{i % 2}")
    return bus


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    limit=st.integers(0, 40),
    query_limit=st.integers(0, 70),
    et=st.sampled_from([None, ANY, *TYPES]),
    source=st.sampled_from([None, "s0", "s1"]),
    since_seq=st.one_of(st.none(), st.integers(0, 70)),
)
def test_limit_queries_match_a_full_scan(
    n: int,
    limit: int,
    query_limit: int,
    et: enum.Enum | None,
    source: str | None,
    since_seq: int | None,
) -> None:
    """history(limit=N) (a scan from the newest end) returns what filtering everything returns."""
    bus = _filled(n, limit)
    fast = bus.history(et, source=source, since_seq=since_seq, limit=query_limit)
    query = Query(et, source, None, since_seq, None, query_limit)
    full = select(bus.history(), query)
    assert fast == full


def test_newest_scan_stops_after_the_limit() -> None:
    """History.newest touches only the events it needs (here: the last 3 of 100,000)."""
    history = History(100_000, 0, 0)
    bus = EventBus(history_limit=100_000)
    for i in range(100_000):
        bus.publish(ET.TASK_STARTED, i)
    history.recent.extend(bus.history())
    calls = 0

    def match(ev: Any) -> bool:
        nonlocal calls
        calls += 1
        return True

    assert [e.data for e in history.newest(3, match)] == [99_997, 99_998, 99_999]
    assert calls == 3


def test_stream_replay_of_the_last_n_matches_a_full_scan() -> None:
    """stream(replay=N) picks the newest N matching events (selected from the newest end)."""
    import asyncio

    bus = _filled(50, 1000)

    async def main() -> list[int]:
        s = bus.stream(ET.TASK_COMPLETED, replay=4)
        out = [s.get_nowait() for _ in range(4)]
        s.close()
        return [e.data for e in out if e is not None]

    want = [e.data for e in bus.history(ET.TASK_COMPLETED)][-4:]
    assert asyncio.run(main()) == want


def test_clear_history_drops_the_events_and_keeps_counting() -> None:
    """clear_history() forgets every event (payloads freed), seq keeps counting."""

    class Payload:
        pass

    bus = EventBus()
    p = Payload()
    ref = weakref.ref(p)
    bus.publish(ET.TASK_STARTED, p, correlation_id="run")
    del p
    bus.clear_history()
    gc.collect()
    assert ref() is None
    assert bus.history() == bus.history(correlation_id="run") == []
    bus.publish(ET.TASK_STARTED)
    assert bus.history()[0].seq == 2


def test_subscribing_to_any_with_many_types_keeps_routes_right() -> None:
    """ANY subscribed after 2,000 types were routed reaches all of them (routes rebuilt lazily)."""
    Many = enum.Enum("Many", [f"T{i}" for i in range(2000)])  # type: ignore[misc]
    bus = EventBus()
    for t in Many:
        bus.publish(t)
    seen: list[Any] = []
    bus.subscribe(ANY, lambda e: seen.append(e.type))
    for t in Many:
        bus.publish(t)
    assert seen == list(Many)


# ---------------------------------------------- moved from test_bus.py (unchanged)


def test_history_is_bounded_and_filtered(bus: EventBus) -> None:
    """History keeps the newest history_limit events, oldest first, with filters."""
    small = EventBus(history_limit=3)
    for i in range(5):
        small.publish(ET.TASK_STARTED if i % 2 else Color.RED, i, source=f"s{i % 2}")
    assert [e.data for e in small.history()] == [2, 3, 4]
    assert [e.data for e in small.history(Color.RED)] == [2, 4]
    assert [e.data for e in small.history(source="s1")] == [3]
    assert [e.data for e in small.history(limit=2)] == [3, 4]
    assert small.history(limit=0) == []
    assert [e.data for e in small.history(limit=5)] == [2, 3, 4]  # more than retained
    assert [e.data for e in small.history(since_seq=4)] == [4]
    ts = small.history()[1].timestamp
    assert [e.data for e in small.history(since=ts)] == [3, 4]
    small.clear_history()
    assert small.history() == []
    small.publish(ET.TASK_STARTED)
    assert small.history()[0].seq == 6  # seq keeps counting
    with pytest.raises(ValueError, match="limit"):
        small.history(limit=-1)


def test_history_limit_zero_keeps_nothing() -> None:
    """history_limit=0 disables history but still counts events."""
    b = EventBus(history_limit=0)
    b.publish(ET.TASK_STARTED)
    assert b.history() == []
    assert b.stats()["published"] == 1


@pytest.mark.parametrize("bad", [-1, "10", 1.5, True])
def test_bad_history_limit(bad: Any) -> None:
    """A negative or non-int history limit is refused with a clear error."""
    with pytest.raises((ValueError, TypeError), match="history_limit"):
        EventBus(history_limit=bad)


def test_run_history_can_be_disabled() -> None:
    """max_runs=0 (or run_history_limit=0) keeps no runs; correlated publishes still work."""
    cases: tuple[dict[str, Any], ...] = ({"max_runs": 0}, {"run_history_limit": 0})
    for options in cases:
        b = EventBus(**options)
        b.publish(ET.TASK_STARTED, correlation_id="r")
        assert b.history(correlation_id="r") == []
        assert len(b.history()) == 1
        assert b.stats()["runs_retained"] == 0


def test_run_history_is_bounded_two_ways() -> None:
    """Per-run history keeps run_history_limit events for at most max_runs runs (LRU)."""
    b = EventBus(history_limit=5, run_history_limit=3, max_runs=2)
    for i in range(5):
        b.publish(ET.TASK_STARTED, i, correlation_id="a")
    b.publish(ET.TASK_STARTED, "b0", correlation_id="b")
    b.publish(ET.TASK_STARTED, 5, correlation_id="a")  # touches "a": now most recent
    b.publish(ET.TASK_STARTED, "c0", correlation_id="c")  # evicts "b"
    assert [e.data for e in b.history(correlation_id="a")] == [3, 4, 5]
    assert b.history(correlation_id="b") == []
    assert [e.data for e in b.history(correlation_id="c")] == ["c0"]
    s = b.stats()
    assert s["runs_retained"] == 2
    assert s["runs_evicted"] == 1


def test_run_trimmed_upto_names_what_a_run_lost() -> None:
    """run_trimmed_upto: None for a complete run, the newest lost seq for a trimmed one."""
    bus = EventBus(run_history_limit=3)
    with correlate("r"):
        for _ in range(5):
            bus.publish(EventType.TASK_STARTED)
    assert bus.run_trimmed_upto("r") == 2
    assert [e.seq for e in bus.history(correlation_id="r")] == [3, 4, 5]
    assert bus.run_trimmed_upto("other") is None

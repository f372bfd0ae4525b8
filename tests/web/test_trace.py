"""The trace of a run: ``build_trace`` and ``GET /trace``."""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import httpx
import pytest

from atlas_events import Event, EventBus, EventType, correlate
from atlas_events.web import build_trace, create_app

from .conftest import malformed_event


def run_with_error(bus: EventBus) -> None:
    """A run: start -> two children (one in a scope) -> a handler fails on one of them."""
    agents = bus.scope("agents")

    def on_started(ev: Event[Any]) -> None:
        if ev.source == "root":
            agents.publish(EventType.TASK_STARTED, {"step": 1}, source="planner")
            bus.publish(EventType.TASK_COMPLETED, {"step": 2})

    def on_completed(ev: Event[Any]) -> None:
        raise RuntimeError("disk full")

    bus.subscribe(EventType.TASK_STARTED, on_started)
    bus.subscribe(EventType.TASK_COMPLETED, on_completed)
    bus.subscribe(EventType.HANDLER_ERROR, lambda e: None)
    with correlate("run-7"):
        bus.publish(EventType.TASK_STARTED, {"step": 0}, source="root")
        time.sleep(0.2)  # an idle span: a gap
        bus.publish(EventType.TASK_COMPLETED, {"step": 3}, source="late")


def encode(ev: Event[Any]) -> dict[str, Any]:
    return {"seq": ev.seq, "type": ev.type_name, "data": ev.data}


def test_tree_times_lanes_errors_and_gaps(bus: EventBus) -> None:
    """Parents hold their children; errors sit on the event that caused them; gaps are listed."""
    run_with_error(bus)
    events = bus.history(correlation_id="run-7")
    trace = build_trace(events, encode)
    roots = trace["roots"]
    assert [r["event"]["data"] for r in roots] == [{"step": 0}, {"step": 3}]
    first = roots[0]
    assert first["offset"] == 0.0
    assert first["lane"] == "(root)"
    kids = first["children"]
    assert [k["event"]["data"] for k in kids] == [{"step": 1}, {"step": 2}]
    assert kids[0]["lane"] == "agents"
    assert all(k["depth"] == 1 for k in kids)
    assert kids[1]["errors"][0]["error"] == "RuntimeError: disk full"
    assert "on_completed" in kids[1]["errors"][0]["handler"]
    assert roots[1]["errors"][0]["error"] == "RuntimeError: disk full"
    assert trace["errors"] == 2
    assert trace["count"] == 4  # HANDLER_ERROR reports are folded into their events
    assert trace["lanes"] == ["(root)", "agents"]
    assert trace["duration"] >= 0.2
    (gap,) = trace["gaps"]
    assert gap["seconds"] >= 0.2
    assert 0 <= gap["start"] < gap["end"] <= trace["duration"]
    assert roots[1]["offset"] == pytest.approx(trace["duration"])


def test_missing_parents_and_bad_timestamps(bus: EventBus) -> None:
    """An event whose parent is gone is a marked root; a NaN timestamp has no offset."""
    ev = attrs.evolve(Event.create(EventType.TASK_STARTED, 1), parent_id="gone")
    bad = malformed_event(data=2, timestamp=float("nan"))
    trace = build_trace([ev, bad], encode)
    assert trace["orphans"] == 1
    assert trace["roots"][0]["parent_missing"] is True
    assert trace["roots"][1]["offset"] is None
    assert build_trace([], encode)["count"] == 0


def test_deep_chains_do_not_recurse(bus: EventBus) -> None:
    """A 5,000-deep causation chain builds (no recursion limit)."""
    events = [Event.create(EventType.TASK_STARTED, 0)]
    for i in range(1, 5000):
        events.append(
            attrs.evolve(Event.create(EventType.TASK_STARTED, i), parent_id=events[-1].id)
        )
    trace = build_trace(events, encode)
    node = trace["roots"][0]
    while node["children"]:
        node = node["children"][0]
    assert node["depth"] == 4999


@pytest.mark.asyncio
async def test_trace_endpoint_by_run_and_by_event(bus: EventBus) -> None:
    """``/trace?correlation_id=`` and ``/trace?event=`` answer the tree as JSON, redacted."""
    run_with_error(bus)
    bus.publish(EventType.TASK_STARTED, {"password": "hunter2"}, source="solo")
    solo = bus.history()[-1]
    app = create_app(bus)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        resp = await client.get("/trace", params={"correlation_id": "run-7"})
        assert resp.status_code == 200
        body = resp.json()
        assert body["correlation_id"] == "run-7"
        assert body["count"] == 4
        assert body["truncated"] is False
        assert body["roots"][0]["event"]["type"] == "EventType.TASK_STARTED"
        child = body["roots"][0]["children"][0]
        by_event = (await client.get("/trace", params={"event": child["event"]["id"]})).json()
        assert by_event["correlation_id"] == "run-7"
        assert by_event["count"] == 4
        uncorrelated = (await client.get("/trace", params={"event": solo.id})).json()
        assert uncorrelated["count"] == 1
        assert uncorrelated["roots"][0]["event"]["data"] == {"password": "***"}
        assert (await client.get("/trace?correlation_id=nope")).status_code == 404
        assert (await client.get("/trace?event=nope")).status_code == 404
        both = await client.get("/trace", params={"event": "a", "correlation_id": "b"})
        assert both.status_code == 400


def test_parent_cycles_and_reused_ids_keep_every_event(bus: EventBus) -> None:
    """Events whose parent_ids form a cycle, or that reuse an id, are all shown, once each.

    ``Event()`` does not stop a buggy producer (or a bridge) from recording
    A (parent B) and B (parent A); the trace must neither lose them nor build
    a cyclic tree that cannot be written as JSON.
    """
    a = Event.create(EventType.TASK_STARTED, "a")
    b = attrs.evolve(Event.create(EventType.TASK_STARTED, "b"), parent_id=a.id)
    a = attrs.evolve(a, parent_id=b.id)
    self_parent = Event.create(EventType.TASK_STARTED, "self")
    self_parent = attrs.evolve(self_parent, parent_id=self_parent.id)
    twin = attrs.evolve(self_parent, data="twin", parent_id=None)
    child = attrs.evolve(Event.create(EventType.TASK_STARTED, "child"), parent_id=b.id)
    trace = build_trace([a, b, self_parent, twin, child], encode)
    json.dumps(trace)  # no cycle left in the tree
    seen: list[Any] = []
    stack = list(trace["roots"])
    while stack:
        node = stack.pop()
        seen.append(node["event"]["data"])
        stack.extend(node["children"])
    assert sorted(seen) == ["a", "b", "child", "self", "twin"]
    assert trace["count"] == 5
    assert trace["cycles"] == 1
    broken = [r for r in trace["roots"] if r.get("parent_cycle")]
    assert [r["event"]["data"] for r in broken] == ["a"]


@pytest.mark.asyncio
async def test_trace_endpoint_survives_parent_cycles(bus: EventBus) -> None:
    """``/trace`` answers 200 with every event of a run whose parent_ids loop."""
    for ident, parent in (("A", "B"), ("B", "A")):
        ev = Event.create(EventType.TASK_STARTED, ident, correlation_id="loop")
        bus.publish_event(attrs.evolve(ev, id=ident, parent_id=parent))
    app = create_app(bus)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        resp = await client.get("/trace", params={"correlation_id": "loop"})
    assert resp.status_code == 200
    assert resp.json()["count"] == 2
    assert len(resp.json()["roots"]) == 1


def test_idle_spans_are_gaps_relative_to_the_busy_time() -> None:
    """Bursts separated by idle spans get one gap per span, measured against the busy time.

    Three bursts (0-0.4 ms, 27 ms, 283 ms): both idle spans dwarf the 0.9 ms
    of activity, so both are gaps, though the first is under 10% of the run.
    Ten equal 100 ms pauses between 1 ms bursts are ten gaps.
    """
    base = Event.create(EventType.TASK_STARTED, 0)
    stamps = [0.0, 0.0002, 0.0004, 0.027, 0.2828, 0.2830, 0.2832]
    events = [attrs.evolve(base, id=f"e{i}", timestamp=100.0 + t) for i, t in enumerate(stamps)]
    gaps = build_trace(events, encode)["gaps"]
    assert [round(g["start"], 4) for g in gaps] == [0.0004, 0.027]
    assert [round(g["end"], 4) for g in gaps] == [0.027, 0.2828]
    stamps = [i * 0.101 + d for i in range(11) for d in (0.0, 0.001)]
    events = [attrs.evolve(base, id=f"p{i}", timestamp=100.0 + t) for i, t in enumerate(stamps)]
    assert len(build_trace(events, encode)["gaps"]) == 10
    steady = [attrs.evolve(base, id=f"s{i}", timestamp=100.0 + i * 0.02) for i in range(50)]
    assert build_trace(steady, encode)["gaps"] == []


@pytest.mark.asyncio
async def test_a_run_trimmed_by_the_history_is_marked_truncated() -> None:
    """A run longer than the per-run history says so (``truncated``, ``lost_upto_seq``)."""
    bus = EventBus(history_limit=10_000, run_history_limit=50)
    with correlate("long"):
        for i in range(120):
            bus.publish(EventType.TASK_STARTED, {"i": i})
    with correlate("short"):
        bus.publish(EventType.TASK_STARTED, {"i": 0})
    app = create_app(bus)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        long = (await client.get("/trace", params={"correlation_id": "long"})).json()
        short = (await client.get("/trace", params={"correlation_id": "short"})).json()
    assert long["count"] == 50
    assert long["truncated"] is True
    assert long["lost_upto_seq"] == 70
    assert short["truncated"] is False
    assert short["lost_upto_seq"] is None

"""Middleware chains: order, drops, and policies inherited down a scope tree."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import httpx
import pytest

from atlas_events import ANY, Event, EventBus, EventType
from atlas_events.middleware import DropTypes, Redact, SetMetadata
from atlas_events.web import create_app

ET = EventType
SECRET = "sk-live-123"


def _tree() -> tuple[EventBus, EventBus, EventBus, EventBus]:
    root = EventBus(name="root")
    agents = root.scope("agents")
    planner = agents.scope("planner")
    step = planner.scope("step")
    return root, agents, planner, step


@pytest.mark.asyncio
async def test_redact_on_the_root_covers_a_scope_three_levels_down() -> None:
    """Handlers, history, a stream and a dashboard on a depth-3 scope never see the secret."""
    root, agents, planner, step = _tree()
    root.add_middleware(Redact())  # Redact inherits by default
    seen: list[Any] = []
    for b in (root, agents, planner, step):
        b.subscribe(ET.TASK_STARTED, lambda e: seen.append(e.data))
    stream = step.stream(ET.TASK_STARTED)
    step.publish(ET.TASK_STARTED, {"api_key": SECRET, "n": 1}, metadata={"token": SECRET})
    got = await asyncio.wait_for(stream.get(), 5)
    stream.close()
    app = create_app(step, redact=False)  # no dashboard-side redaction: the bus did it
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        shown = (await client.get("/history")).json()["events"]
    everything = [seen, got, shown, *(b.history() for b in (root, agents, planner, step))]
    assert SECRET not in repr(everything)
    assert len(seen) == 4
    assert got.data == {"api_key": "***", "n": 1}
    root.close()


def test_inherited_policies_run_before_the_scopes_own_middleware() -> None:
    """Order at the publishing scope: root's policy, the parent's, then the scope's own."""
    root, agents, planner, _ = _tree()
    order: list[str] = []

    def tag(name: str) -> Any:
        def mw(e: Event[Any]) -> Event[Any]:
            order.append(name)
            return e

        return mw

    root.add_middleware(tag("root"), inherit=True)
    agents.add_middleware(tag("agents"), inherit=True)
    planner.add_middleware(tag("planner-own"))
    root.add_middleware(tag("root-local"))  # not inherited: runs when the event reaches root
    planner.publish(ET.TASK_STARTED)
    assert order == ["root", "agents", "planner-own", "root-local"]


def test_inherited_middleware_runs_once_per_event() -> None:
    """An inherited policy is not run again when the event is forwarded to its own bus."""
    root, _, _, step = _tree()
    calls: list[str] = []

    def note(e: Event[Any]) -> Event[Any]:
        calls.append(e.id)
        return e

    root.add_middleware(note, inherit=True)
    step.publish(ET.TASK_STARTED)
    root.publish(ET.TASK_STARTED)
    assert len(calls) == 2


def test_inherited_stamping_is_visible_at_every_level() -> None:
    """SetMetadata(inherit=True) on the root stamps events before any scope records them."""
    root, _, planner, step = _tree()
    root.add_middleware(SetMetadata({"region": "eu"}), inherit=True)
    step.publish(ET.TASK_STARTED)
    for b in (step, planner, root):
        assert b.history()[-1].metadata["region"] == "eu"


def test_inherited_drop_stops_the_event_everywhere_and_counts_on_its_owner() -> None:
    """DropTypes(inherit=True) on the root drops a scope's event before any delivery."""
    root, agents, _, step = _tree()
    root.add_middleware(DropTypes(ET.TASK_FAILED), inherit=True)
    seen: list[Event[Any]] = []
    step.subscribe(ANY, seen.append)
    step.publish(ET.TASK_FAILED)
    step.publish(ET.TASK_STARTED)
    assert [e.type for e in seen] == [ET.TASK_STARTED]
    assert [e.type for e in step.history()] == [ET.TASK_STARTED]
    assert root.stats()["dropped_by_middleware"] == 1
    assert step.stats()["dropped_by_middleware"] == 0
    assert agents.stats()["middleware"] == 0  # inherited policies are not the scope's own


def test_a_policy_added_later_covers_existing_scopes_and_removal_uncovers_them() -> None:
    """Adding an inherited policy after the scopes exist covers them; its token removes it."""
    root, _, _, step = _tree()
    token = root.add_middleware(Redact())
    step.publish(ET.TASK_STARTED, {"password": "p"})
    assert step.history()[-1].data == {"password": "***"}
    assert token() is True
    step.publish(ET.TASK_STARTED, {"password": "p"})
    assert step.history()[-1].data == {"password": "p"}


def test_a_scope_created_later_inherits_the_policies() -> None:
    """A scope made after the policy was added is covered too."""
    root = EventBus()
    root.add_middleware(Redact())
    late = root.scope("late").scope("later")
    late.publish(ET.TASK_STARTED, {"secret": "s"})
    assert late.history()[-1].data == {"secret": "***"}


def test_local_middleware_stays_local_by_default() -> None:
    """A plain function middleware runs on its own bus only (as before)."""
    root, _, _, step = _tree()
    root.add_middleware(lambda e: attrs.evolve(e, metadata={"root": True}))
    step.publish(ET.TASK_STARTED)
    assert dict(step.history()[-1].metadata) == {}
    assert dict(root.history()[-1].metadata) == {"root": True}


def test_inherit_must_be_a_bool() -> None:
    """add_middleware(inherit=...) accepts True, False or None only."""
    bus = EventBus()
    with pytest.raises(TypeError, match="inherit"):
        bus.add_middleware(lambda e: e, inherit="yes")  # type: ignore[arg-type]
    assert bus.stats()["middleware"] == 0

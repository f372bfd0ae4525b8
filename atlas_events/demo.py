"""A realistic provider / agent / workflow mesh, wired through atlas-events.

``atlas-events demo`` (or ``python -m atlas_events demo``) runs it and prints
a timeline, then shows history, scopes, tokens, weak handlers and stats.
The same mesh drives ``atlas-events serve --demo``.
"""

from __future__ import annotations

import enum
import gc
import random
import time
from collections.abc import Callable
from typing import Any, TextIO

import attrs

from ._bus import EventBus, ScopedEventBus, correlate
from ._event import ANY, Event, EventType, declare
from ._stats import HandlerFailure
from .middleware import DropTypes, Redact, SetMetadata

__all__ = ["DemoEvent", "DemoMesh", "TaskResult", "run_demo"]


class DemoEvent(enum.Enum):
    """The demo's own event types: any Enum works next to EventType."""

    TOKEN_STREAMED = "token_streamed"
    HEARTBEAT = "heartbeat"
    RUN_FINISHED = "run_finished"


@attrs.frozen
class TaskResult:
    """A typed payload: declared for TASK_COMPLETED, checked by mypy and at run time."""

    task: str
    agent: str
    ok: bool
    tokens: int


TASK_DONE = declare(EventType.TASK_COMPLETED, TaskResult)


class Provider:
    """An LLM-provider stand-in: connects, then streams tokens for requests."""

    def __init__(self, bus: ScopedEventBus, root: EventBus, name: str, rng: random.Random) -> None:
        self.bus = bus
        self.name = name
        self.rng = rng
        self.requests = 0
        # A bound method: held weakly, the subscription dies with the component.
        # It listens on the root bus, which sees the agents' TASK_STARTED events.
        self.token = root.subscribe(EventType.TASK_STARTED, self.on_task_started)
        bus.publish(EventType.PROVIDER_CREATED, {"provider": name}, source=name)

    def connect(self) -> None:
        self.bus.publish(
            EventType.PROVIDER_CONNECTED,
            {"provider": self.name, "api_key": "sk-demo-123", "region": "eu-west"},
            source=self.name,
        )

    def on_task_started(self, event: Event[Any]) -> None:
        self.requests += 1

    def complete(self, prompt: str) -> int:
        """Stream a completion; return the token count."""
        stream_id = f"{self.name}-{self.requests}"
        self.bus.publish(EventType.STREAM_STARTED, {"stream_id": stream_id}, source=self.name)
        tokens = self.rng.randint(3, 6)
        for i in range(tokens):
            self.bus.publish(DemoEvent.TOKEN_STREAMED, {"stream_id": stream_id, "i": i})
        self.bus.publish(
            EventType.STREAM_FINISHED, {"stream_id": stream_id, "tokens": tokens}, source=self.name
        )
        return tokens


class Agent:
    """An agent in its own scope: runs tasks on a provider."""

    def __init__(self, bus: ScopedEventBus, provider: Provider) -> None:
        self.bus = bus
        self.name = bus.scope_name
        self.provider = provider
        self.completed: list[str] = []
        bus.subscribe(TASK_DONE, self.on_done)

    def start(self) -> None:
        self.bus.publish(EventType.AGENT_STARTED, {"agent": self.name}, source=self.name)

    def run_task(self, task: str) -> None:
        self.bus.publish(EventType.TASK_STARTED, {"task": task}, source=self.name)
        tokens = self.provider.complete(task)
        self.bus.publish(TASK_DONE, TaskResult(task, self.name, True, tokens), source=self.name)

    def on_done(self, event: Event[TaskResult]) -> None:
        self.completed.append(event.data.task)

    def stop(self) -> None:
        self.bus.publish(EventType.AGENT_STOPPED, {"agent": self.name}, source=self.name)


class Workflow:
    """A workflow whose nodes hand tasks to agents."""

    def __init__(self, bus: ScopedEventBus, steps: list[tuple[str, Agent, str]]) -> None:
        self.bus = bus
        self.steps = steps

    def run(self, run_id: str) -> None:
        with correlate(run_id):
            for node, agent, task in self.steps:
                self.bus.publish(EventType.WORKFLOW_NODE_ENTERED, {"node": node}, source="workflow")
                agent.run_task(task)
                self.bus.publish(EventType.WORKFLOW_NODE_EXITED, {"node": node}, source="workflow")
            self.bus.publish(DemoEvent.RUN_FINISHED, {"run": run_id}, source="workflow")


class DemoMesh:
    """The demo's wiring, reusable by the CLI demo and the dashboard."""

    def __init__(self, bus: EventBus | None = None, *, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.bus = bus or EventBus(
            history_limit=500, name="mesh", terminal_types=(DemoEvent.RUN_FINISHED,)
        )
        self.bus.declare(TASK_DONE)
        # Middleware: redact secrets, stamp the host, drop heartbeats.
        self.bus.add_middleware(Redact())
        self.bus.add_middleware(SetMetadata({"host": "demo-host"}))
        self.bus.add_middleware(DropTypes(DemoEvent.HEARTBEAT))
        self.providers_scope = self.bus.scope("providers")
        self.agents_scope = self.bus.scope("agents")
        self.workflows_scope = self.bus.scope("workflows")
        self.provider = Provider(self.providers_scope.scope("openai"), self.bus, "openai", self.rng)
        self.planner = Agent(self.agents_scope.scope("planner"), self.provider)
        self.coder = Agent(self.agents_scope.scope("coder"), self.provider)
        self.workflow = Workflow(
            self.workflows_scope.scope("release"),
            [
                ("plan", self.planner, "write a plan"),
                ("implement", self.coder, "write the code"),
                ("review", self.planner, "review the diff"),
            ],
        )
        self.runs = 0

    def start(self) -> None:
        self.bus.publish(EventType.SYSTEM_INIT, {"components": 4}, source="demo")
        self.provider.connect()
        self.planner.start()
        self.coder.start()

    def run_once(self) -> str:
        self.runs += 1
        run_id = f"run-{self.runs}"
        self.bus.publish(DemoEvent.HEARTBEAT)  # dropped by middleware
        self.workflow.run(run_id)
        return run_id

    def stop(self) -> None:
        self.planner.stop()
        self.coder.stop()
        self.bus.publish(EventType.SYSTEM_SHUTDOWN, None, source="demo")


def _fmt_data(data: object) -> str:
    if isinstance(data, HandlerFailure):
        return f"{data.handler} raised {type(data.exception).__name__}: {data.exception}"
    text = repr(data) if data is not None else ""
    return text if len(text) <= 70 else text[:67] + "..."


class Timeline:
    """Prints one line per event reaching the root bus."""

    def __init__(self, out: TextIO, t0: float) -> None:
        self.out = out
        self.t0 = t0
        self.lines = 0

    def __call__(self, event: Event[Any]) -> None:
        self.lines += 1
        ms = (event.timestamp - self.t0) * 1000
        where = "/".join(event.scope) or "(root)"
        self.out.write(
            f"  {event.seq:>3} {ms:7.2f}ms  {where:<24} {event.type.name:<22} "
            f"{_fmt_data(event.data)}\n"
        )


def run_demo(out: TextIO, *, seed: int = 7) -> DemoMesh:
    """Run the whole narrated demo, writing to ``out``; return the mesh."""
    write: Callable[[str], Any] = out.write
    bus = EventBus(history_limit=500, name="mesh", terminal_types=(DemoEvent.RUN_FINISHED,))
    timeline = Timeline(out, time.time())
    write("atlas-events demo: one root bus, nested scopes, a provider, two agents, a workflow\n")
    write("\n== 1. Timeline (an ANY subscriber on the root bus sees every scope) ==\n")
    write("  seq    time  scope                    type                   data\n")
    timeline_token = bus.subscribe(ANY, timeline)
    mesh = DemoMesh(bus, seed=seed)

    mesh.start()

    # A flaky audit handler: its error is isolated and reported as HANDLER_ERROR.
    def flaky_audit(event: Event[Any]) -> None:
        raise RuntimeError("audit store unavailable")

    flaky = bus.subscribe(EventType.WORKFLOW_NODE_EXITED, flaky_audit, once=True)
    run_id = mesh.run_once()
    mesh.stop()
    timeline_token()  # unsubscribe: the rest of the demo prints its own lines

    write("\n== 2. Middleware ==\n")
    connected = bus.history(EventType.PROVIDER_CONNECTED)[-1]
    write(f"  redacted payload:  {connected.data}\n")
    write(f"  stamped metadata:  {dict(connected.metadata)}\n")
    write(f"  dropped heartbeats: {bus.stats()['dropped_by_middleware']}\n")

    write("\n== 3. Scopes: the same event at every level ==\n")
    planner_bus = mesh.planner.bus
    first = planner_bus.history(EventType.TASK_STARTED)[0]
    root_copy = next(e for e in bus.history(EventType.TASK_STARTED) if e.id == first.id)
    write(f"  event {first.id}: scope={first.scope}\n")
    write(f"    seq {first.seq} in agents/planner's history, seq {root_copy.seq} in the root's\n")
    local = planner_bus.publish(EventType.TASK_STARTED, {"task": "local only"}, propagate=False)
    write(
        f"  propagate=False keeps {local} in its scope: "
        f"root has it: {any(e.id == local for e in bus.history())}\n"
    )

    write("\n== 4. History queries ==\n")
    done = bus.history(EventType.TASK_COMPLETED)
    write(f"  TASK_COMPLETED events: {[e.data.task for e in done if e.data]}\n")
    run = bus.history(correlation_id=run_id)
    write(f"  run {run_id!r}: {len(run)} events, from {run[0].type.name} to {run[-1].type.name}\n")
    error = bus.history(EventType.HANDLER_ERROR)[0]
    cause = next(e for e in bus.history() if e.id == error.parent_id)
    write(
        f"  causation: HANDLER_ERROR #{error.seq} has parent_id={error.parent_id}, "
        f"the {cause.type.name} #{cause.seq} whose handler failed\n"
    )
    write(
        f"  agents/* history sizes: planner={len(planner_bus.history())}, "
        f"coder={len(mesh.coder.bus.history())}\n"
    )

    write("\n== 5. Tokens and weak handlers ==\n")
    write(f"  the once=True flaky handler fired and unsubscribed itself: active={flaky.active}\n")
    seen: list[str] = []
    with bus.subscribe(EventType.TASK_STARTED, lambda e: seen.append(e.id)) as token:
        mesh.planner.run_task("inside the with-block")
    mesh.planner.run_task("after the with-block")
    write(
        f"  context-managed token saw {len(seen)} event(s); active after the block: "
        f"{token.active}; calling it again returns {token()}\n"
    )
    before = bus.subscriber_count(EventType.TASK_STARTED)
    provider_token = mesh.provider.token
    write(
        f"  provider handled {mesh.provider.requests} TASK_STARTED events via a weak bound method\n"
    )
    mesh.provider = None  # type: ignore[assignment]
    mesh.planner.provider = mesh.coder.provider = None  # type: ignore[assignment]
    gc.collect()
    after = bus.subscriber_count(EventType.TASK_STARTED)
    write(
        f"  provider deleted + gc: its token active={provider_token.active}, "
        f"root TASK_STARTED subscribers {before} -> {after}\n"
    )

    write("\n== 6. Stats ==\n")
    stats = bus.stats()
    for key in (
        "published",
        "delivered",
        "dropped_by_middleware",
        "handler_errors",
        "history_size",
        "history_limit",
        "runs_retained",
    ):
        write(f"  {key:<22} {stats[key]}\n")
    write(f"  {'subscribers':<22} {stats['subscribers']}\n")
    write(f"\n{timeline.lines} timeline lines printed; see docs/guide.md for the API.\n")
    return mesh

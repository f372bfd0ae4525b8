"""The README's quick tour, as a program that runs.

Run: python docs/examples/quickstart.py
"""

from __future__ import annotations

import enum
import gc

import attrs

from atlas_events import ANY, Event, EventBus, EventType, correlate, declare
from atlas_events.middleware import Redact
from atlas_events.testing import capture_events


class Billing(enum.Enum):  # your own event types: any Enum works
    CHARGED = "charged"


@attrs.frozen
class TaskResult:
    task: str
    ok: bool


TASK_DONE = declare(EventType.TASK_COMPLETED, TaskResult)  # typed payloads


class Agent:
    def __init__(self, bus: EventBus) -> None:
        self.done: list[str] = []
        bus.subscribe(TASK_DONE, self.on_done)  # bound method: held weakly

    def on_done(self, event: Event[TaskResult]) -> None:
        self.done.append(event.data.task)  # event.data is a TaskResult (mypy knows)


def main() -> None:
    bus = EventBus(history_limit=1000)
    bus.declare(TASK_DONE)
    bus.add_middleware(Redact())  # transform (or drop) events before anyone sees them

    # Subscribe: the token unsubscribes, also as a context manager.
    unsubscribe = bus.subscribe(EventType.STREAM_STARTED, lambda e: print("started", e.data))
    bus.publish(EventType.STREAM_STARTED, {"stream_id": "s1", "token": "secret"})
    unsubscribe()

    # Scopes: a child bus forwards the same event to its parent.
    agents = bus.scope("agents")
    planner = agents.scope("planner")
    bus.subscribe(
        ANY, lambda e: print(f"root saw {e.type.name} from {'/'.join(e.scope) or '(root)'}")
    )
    agent = Agent(planner)
    with correlate("run-42"):
        planner.publish(TASK_DONE, TaskResult("plan", True))
        bus.publish(Billing.CHARGED, {"cents": 12})

    # History: bounded, filterable, per run.
    print("history:", [e.type.name for e in bus.history()])
    print("run-42:", [e.type.name for e in bus.history(correlation_id="run-42")])

    # Weak handlers: the agent's subscription ends with the agent.
    print("agent saw", agent.done, "| subscribers before:", planner.subscriber_count())
    del agent
    gc.collect()
    print("subscribers after the agent is gone:", planner.subscriber_count())

    # The test kit.
    with capture_events(bus) as rec:
        bus.publish(EventType.TASK_STARTED, {"task": "x"})
    rec.assert_published(EventType.TASK_STARTED, count=1)

    print("stats:", {k: bus.stats()[k] for k in ("published", "delivered", "handler_errors")})
    bus.close()


if __name__ == "__main__":
    main()

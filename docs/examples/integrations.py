"""docs/integrations.md: wait_for, @bus.on, components, handler policies and CloudEvents."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from atlas_events import Event, EventBus, EventType, HandlerFailure, HandlerRemoved, handles
from atlas_events.cloudevents import from_json, to_json


def expect(condition: bool, what: object) -> None:
    """Stop with a message if the example does not behave as documented."""
    if not condition:
        raise SystemExit(f"unexpected: {what}")


bus = EventBus(name="app")


# -- @bus.on: the function stays a plain function --------------------------
@bus.on(EventType.TASK_COMPLETED, filter=lambda e: e.data["ok"])
def on_success(event: Event[Any]) -> None:
    print("completed:", event.data["task"])


# -- a component: one call, one token, held weakly --------------------------
class Planner:
    def __init__(self) -> None:
        self.started: list[str] = []

    @handles(EventType.TASK_STARTED)
    def on_start(self, event: Event[Any]) -> None:
        self.started.append(event.data["task"])

    @handles(EventType.TASK_FAILED, max_failures=3)  # removed after 3 failures in a row
    def on_failure(self, event: Event[Any]) -> None:
        raise RuntimeError("the planner cannot handle failures yet")


planner = Planner()
planner_token = bus.subscribe_component(planner)

# -- handler policies: failures are reported, then the handler is removed ---
failures: list[HandlerFailure] = []
removed: list[HandlerRemoved] = []
bus.subscribe(EventType.HANDLER_ERROR, lambda e: failures.append(e.data))
bus.subscribe(EventType.HANDLER_REMOVED, lambda e: removed.append(e.data))
for n in range(4):
    bus.publish(EventType.TASK_FAILED, {"task": f"t{n}"})
expect(len(failures) == 3, failures)
expect("Planner.on_failure" in removed[0].handler, removed)
print("removed:", removed[0].handler, "after", removed[0].failures, "failures")
print("stats:", {k: bus.stats()[k] for k in ("handler_errors", "handlers_removed")})


# -- wait_for: subscribe first, then trigger; from any thread ---------------
async def main() -> None:
    waiting = bus.wait_for(
        EventType.TASK_COMPLETED, where=lambda e: e.data["task"] == "b", timeout=5
    )
    worker = threading.Thread(
        target=lambda: [
            bus.publish(EventType.TASK_COMPLETED, {"task": t, "ok": True}) for t in ("a", "b")
        ]
    )
    worker.start()
    done = await waiting
    worker.join()
    print("waited for:", done.data)


asyncio.run(main())

# the synchronous counterpart, for plain threads
threading.Timer(0.05, bus.publish, (EventType.TASK_STARTED, {"task": "late"})).start()
late = bus.wait_for_sync(EventType.TASK_STARTED, timeout=5)
expect(planner.started == ["late"], planner.started)

# -- CloudEvents ------------------------------------------------------------
[recorded] = bus.history(EventType.TASK_STARTED)
document = to_json(recorded)
print("CloudEvent:", document)
expect(from_json(document).id == recorded.id, document)

bus.off(EventType.TASK_COMPLETED, on_success)
planner_token()  # unsubscribes every handler of the component
expect(bus.subscriber_count(EventType.TASK_STARTED) == 0, bus.stats())
bus.close()

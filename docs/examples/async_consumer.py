"""Async consumers: a sync producer thread, an async dashboard-like consumer.

Run: python docs/examples/async_consumer.py
"""

from __future__ import annotations

import asyncio
import enum
import threading
from typing import Any

from atlas_events import Event, EventBus, EventType


class Run(enum.Enum):
    STEP = "step"
    FINISHED = "finished"


def worker(bus: EventBus, run_id: str) -> None:
    """A synchronous component publishing from a plain thread."""
    for i in range(5):
        bus.publish(Run.STEP, {"step": i}, correlation_id=run_id)
    bus.publish(Run.FINISHED, {"ok": True}, correlation_id=run_id)


async def main() -> None:
    bus = EventBus(terminal_types=(Run.FINISHED,))

    # 1. An async handler: runs on this loop, whichever thread publishes.
    async def audit(event: Event[Any]) -> None:
        await asyncio.sleep(0)  # e.g. write to a database
        print(f"audit    {event.type.name} {event.data}")

    bus.subscribe(Run.FINISHED, audit)

    # 2. A stream for one run: it replays what the run already published,
    #    then follows it live, and ends by itself after the terminal event.
    bus.publish(Run.STEP, {"step": "warm-up"}, correlation_id="run-1")
    async with bus.stream(correlation_id="run-1", replay="all", max_queue=100) as events:
        threading.Thread(target=worker, args=(bus, "run-1")).start()
        async for event in events:
            print(f"stream   #{event.seq} {event.type.name} {event.data}")
    await asyncio.sleep(0.01)  # let the audit task finish

    # 3. publish_async awaits the async handlers of the event it publishes.
    await bus.publish_async(Run.FINISHED, {"ok": "again"}, timeout=1.0)

    stats = bus.stats()
    print(
        f"published={stats['published']} streams={stats['streams']} "
        f"async_errors={stats['async_handler_errors']}"
    )
    bus.publish(EventType.SYSTEM_SHUTDOWN)
    bus.close()


if __name__ == "__main__":
    asyncio.run(main())

"""Request/reply on one bus: the request's id is known before any handler runs.

Build the request with Event.create (it gets its id at once), subscribe for
the reply *before* publishing (so a synchronous responder cannot answer
before anyone listens), then publish it with publish_event. A reply
published by a handler of the request carries the request's id as its
parent_id (causation) and the request's correlation id.
"""

from __future__ import annotations

from typing import Any

from atlas_events import Event, EventBus, EventType, correlate


def main() -> None:
    bus = EventBus()

    def pricing_service(request: Event[Any]) -> None:  # a synchronous responder
        bus.publish(EventType.TASK_COMPLETED, {"price": request.data["qty"] * 3})

    bus.subscribe(EventType.TASK_STARTED, pricing_service)

    with correlate("order-17"):
        request = Event.create(EventType.TASK_STARTED, {"qty": 4})
        replies: list[Event[Any]] = []
        with bus.subscribe(
            EventType.TASK_COMPLETED,
            replies.append,
            filter=lambda e: e.parent_id == request.id,  # the id is known already
        ):
            bus.publish_event(request)

    (reply,) = replies
    if reply.parent_id != request.id or reply.correlation_id != "order-17":
        raise SystemExit(f"unexpected reply {reply!r}")
    print(f"request {request.id} -> reply {reply.data} in run {reply.correlation_id}")
    print("the run:", [e.type_name for e in bus.history(correlation_id="order-17")])


if __name__ == "__main__":
    main()

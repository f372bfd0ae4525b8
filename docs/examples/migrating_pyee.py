"""docs/migrating.md, pyee: each pyee call next to its atlas-events counterpart.

Runs both and checks they observe the same thing (pyee is installed with the
``bench`` extra).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from pyee import EventEmitter
from pyee.cls import evented, on

from atlas_events import Event, EventBus, EventType, HandlerFailure, handles


def expect(condition: bool, what: object) -> None:
    """Stop with a message if the two libraries disagree (examples run as tests)."""
    if not condition:
        raise SystemExit(f"mismatch: {what}")


class Shop(enum.StrEnum):
    """pyee's event-name strings become enum members."""

    ORDER = "order"


# -- pyee ---------------------------------------------------------------------
ee = EventEmitter()
p_seen: list[tuple[str, Any]] = []


@ee.on("order")
def p_log(order: dict[str, Any]) -> None:
    p_seen.append(("log", order["id"]))


ee.once("order", lambda order: p_seen.append(("first", order["id"])))


@ee.on("order")
def p_strict(order: dict[str, Any]) -> None:
    if order["id"] == 2:
        raise ValueError("bad order 2")


ee.emit("order", {"id": 1})
try:  # a sync pyee handler's exception leaves emit() (later handlers are skipped)
    ee.emit("order", {"id": 2})
except ValueError as exc:
    p_seen.append(("error", str(exc)))
ee.remove_listener("order", p_log)
ee.emit("order", {"id": 3})


@evented
class PCart:
    def __init__(self) -> None:
        self.items: list[int] = []

    @on("order")
    def add(self, order: dict[str, Any]) -> None:
        self.items.append(order["id"])


p_cart = PCart()
p_cart.event_emitter.emit("order", {"id": 4})  # @evented gives each instance its own emitter
expect(p_cart.items == [4], p_cart.items)

# -- atlas-events -------------------------------------------------------------
bus = EventBus()
a_seen: list[tuple[str, Any]] = []


@bus.on(Shop.ORDER)  # @ee.on("order")
def a_log(event: Event[Any]) -> None:
    a_seen.append(("log", event.data["id"]))


bus.subscribe(Shop.ORDER, lambda e: a_seen.append(("first", e.data["id"])), once=True)


def on_error(event: Event[HandlerFailure]) -> None:  # other handlers still run
    a_seen.append(("error", str(event.data.exception)))


bus.subscribe(EventType.HANDLER_ERROR, on_error)


@bus.on(Shop.ORDER)
def a_strict(event: Event[Any]) -> None:
    if event.data["id"] == 2:
        raise ValueError("bad order 2")


bus.publish(Shop.ORDER, {"id": 1})  # ee.emit("order", {...})
bus.publish(Shop.ORDER, {"id": 2})
bus.off(Shop.ORDER, a_log)  # ee.remove_listener("order", fn)
bus.publish(Shop.ORDER, {"id": 3})
expect(a_seen == p_seen, (a_seen, p_seen))


class Cart:  # pyee.cls @evented / @on -> @handles + subscribe_component
    def __init__(self) -> None:
        self.items: list[int] = []

    @handles(Shop.ORDER)
    def add(self, event: Event[Any]) -> None:
        self.items.append(event.data["id"])


cart = Cart()
with bus.subscribe_component(cart):  # one token for all its handlers; held weakly
    bus.publish(Shop.ORDER, {"id": 4})
expect(cart.items == [4], cart.items)


async def main() -> None:
    # AsyncIOEventEmitter -> async handlers + publish_async; and a one-shot wait
    waiting = bus.wait_for(Shop.ORDER, where=lambda e: e.data["id"] == 6, timeout=5)
    bus.publish(Shop.ORDER, {"id": 5})
    bus.publish(Shop.ORDER, {"id": 6})
    event = await waiting
    expect(event.data == {"id": 6}, event)


asyncio.run(main())
bus.close()
print("pyee and atlas-events saw the same deliveries:", a_seen)

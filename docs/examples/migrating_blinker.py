"""docs/migrating.md, blinker: each blinker call next to its atlas-events counterpart.

Runs both and checks they observe the same thing (blinker is installed with
the ``bench`` extra).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from blinker import Namespace

from atlas_events import Event, EventBus


def expect(condition: bool, what: object) -> None:
    """Stop with a message if the two libraries disagree (examples run as tests)."""
    if not condition:
        raise SystemExit(f"mismatch: {what}")


class App(enum.StrEnum):
    """Signal names become members of an enum: no magic strings, no global namespace."""

    USER_SAVED = "user.saved"


# -- blinker ------------------------------------------------------------------
ns = Namespace()
user_saved = ns.signal("user.saved")
b_seen: list[tuple[str, Any]] = []


@user_saved.connect
def b_audit(sender: Any, **kw: Any) -> None:
    b_seen.append(("audit", kw["user"]))


def b_admin_only(sender: Any, **kw: Any) -> None:
    b_seen.append(("admin", kw["user"]))


user_saved.connect(b_admin_only, sender="admin-panel")
user_saved.send("signup-form", user="ann")
user_saved.send("admin-panel", user="bob")
with user_saved.connected_to(lambda sender, **kw: b_seen.append(("temp", kw["user"]))):
    user_saved.send("signup-form", user="cy")
user_saved.disconnect(b_audit)
user_saved.send("signup-form", user="dee")
b_count = len(user_saved.receivers)

# -- atlas-events -------------------------------------------------------------
bus = EventBus()
a_seen: list[tuple[str, Any]] = []


@bus.on(App.USER_SAVED)  # @signal.connect
def a_audit(event: Event[Any]) -> None:
    a_seen.append(("audit", event.data["user"]))


def a_admin_only(event: Event[Any]) -> None:
    a_seen.append(("admin", event.data["user"]))


# connect(fn, sender=X): a filter on the event's source
bus.subscribe(App.USER_SAVED, a_admin_only, filter=lambda e: e.source == "admin-panel")
bus.publish(App.USER_SAVED, {"user": "ann"}, source="signup-form")  # send(sender, **kw)
bus.publish(App.USER_SAVED, {"user": "bob"}, source="admin-panel")
with bus.subscribe(App.USER_SAVED, lambda e: a_seen.append(("temp", e.data["user"]))):
    bus.publish(App.USER_SAVED, {"user": "cy"}, source="signup-form")  # connected_to(...)
bus.off(App.USER_SAVED, a_audit)  # disconnect(fn)
bus.publish(App.USER_SAVED, {"user": "dee"}, source="signup-form")
a_count = bus.subscriber_count(App.USER_SAVED)  # len(signal.receivers)

expect(a_seen == b_seen, (a_seen, b_seen))
expect(a_count == b_count == 1, (a_count, b_count))


# send_async -> publish_async (async handlers run on the loop that subscribed them)
async def main() -> None:
    done: list[str] = []

    async def notify(event: Event[Any]) -> None:
        done.append(event.data["user"])

    bus.subscribe(App.USER_SAVED, notify)
    await bus.publish_async(App.USER_SAVED, {"user": "eve"})
    expect(done == ["eve"], done)


asyncio.run(main())
bus.close()
print("blinker and atlas-events saw the same deliveries:", a_seen)

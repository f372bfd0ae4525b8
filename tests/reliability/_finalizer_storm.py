"""Finalizers that publish while the collector interrupts ``ContextVar.set`` (run as a script).

Reproduces python/cpython#148891: with a multi-level context mapping (20
padding variables) and the collector run at nearly every allocation, a
finalizer that sets a context variable inside another ``set``/``reset`` of
the same context frees the mapping being walked. ``unguarded`` removes the
bus's guard (``_context.COLLECTOR``) to show the crash it prevents;
``correlate`` publishes from inside a ``correlate()`` block.
"""

from __future__ import annotations

import contextvars
import enum
import gc
import sys
import weakref
from typing import Any

from atlas_events import ANY, Event, EventBus, EventType, correlate

if "unguarded" in sys.argv:
    from atlas_events import _context

    gc.callbacks.remove(_context.COLLECTOR)
pads: list[contextvars.ContextVar[object]] = [contextvars.ContextVar(f"pad{i}") for i in range(20)]
for v in pads:
    v.set(object())


class Gone(enum.Enum):
    GONE = "gone"


class Cyclic:
    def __init__(self) -> None:
        self.me = self


root = EventBus()
middle = root.scope("a")
bus = middle.scope("b")
seen: list[int] = []
gone: list[int] = []
for level in (bus, middle, root):
    level.subscribe(ANY, lambda e: seen.append(e.seq))


def announce(data: int) -> None:
    """The finalizer: publish, inside a correlate() block when asked to."""
    if "correlate" in sys.argv:
        with correlate(f"gone-{data}"):
            bus.publish(Gone.GONE, data)
    else:
        bus.publish(Gone.GONE, data)


def mw(ev: Event[Any]) -> Event[Any]:
    if ev.type is EventType.TASK_STARTED:
        obj = Cyclic()
        weakref.finalize(obj, announce, ev.data)
        del obj
    return ev


root.subscribe(Gone.GONE, lambda e: gone.append(e.data))
bus.add_middleware(mw)
gc.set_threshold(1, 1, 1)
for i in range(3000):
    bus.publish(EventType.TASK_STARTED, i)
gc.set_threshold(700, 10, 10)
gc.collect()
print(len(gone))

"""Collections while the interpreter wipes atlas_events' modules at exit (run as a script).

At exit, CPython sets the globals of every module still alive to ``None``,
the most recently imported first. Here ``__main__`` keeps ``_context``
alive (a daemon thread runs a function of it, and it imports ``_context``
by name, as tests do), and a module imported before atlas_events holds
objects that collect garbage when they are freed: those collections call
the collector hook (``_context.COLLECTOR``) after its module was wiped.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import types
from collections.abc import Callable

early = types.ModuleType("early_garbage")  # in sys.modules before atlas_events: wiped after it
sys.modules["early_garbage"] = early

from atlas_events import EventBus, EventType, _context  # noqa: E402 - after early_garbage


class Collects:
    """Leaves cyclic garbage and collects it when freed."""

    def __init__(self, collect: Callable[[], int] = gc.collect) -> None:
        self.collect = collect

    def __del__(self) -> None:
        junk: list[object] = []
        junk.append(junk)
        self.collect()


early.__dict__["keep"] = [Collects() for _ in range(3)]
bus = EventBus()
hook = _context.COLLECTOR


def publish_forever() -> None:
    while True:
        bus.publish(EventType.TASK_STARTED, 1)
        time.sleep(0.01)


threading.Thread(target=publish_forever, daemon=True).start()
time.sleep(0.05)
print("ok")

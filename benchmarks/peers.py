"""The implementations under test: atlas-events and its peers.

Each implementation builds *loops* (``run(n)``: publish ``n`` events) for the
scenario shapes, written the way a user of that library would write them:

* :meth:`fanout`: one event type, the given handlers subscribed to it;
* :meth:`round_robin`: one handler per event type, types published in turn;
* :meth:`scoped`: three levels (leaf, middle, root), one handler each; an
  event published at the leaf reaches all three.

Handlers are supplied by the caller (no-op functions for timing, counting
ones in the smoke test) and take one positional argument named ``data``:
PyPubSub and PyDispatcher pass message data by keyword and match it by name.
"""

from __future__ import annotations

import enum
import importlib.util
import itertools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from atlas_events import Event, EventBus, EventType

from ._timing import Loop

__all__ = [
    "IMPLEMENTATIONS",
    "PEERS",
    "Atlas",
    "AtlasBaseline",
    "BenchType",
    "Blinker",
    "Handler",
    "Implementation",
    "PlainLoop",
    "PlainType",
    "PyDispatcher",
    "PyPubSub",
    "Pyee",
    "load_baseline",
    "passthrough",
]

Handler = Callable[[Any], Any]
TYPE: enum.Enum = EventType.TASK_STARTED
PlainType = enum.Enum("PlainType", ["STARTED"])
"""A plain ``Enum`` (its members hash in Python, unlike a ``StrEnum``'s)."""
BenchType = enum.StrEnum("BenchType", [(f"T{i}", f"bench.t{i}") for i in range(100)])  # type: ignore[misc]
"""100 event types for the round-robin scenario (a ``StrEnum``, like ``EventType``)."""

_repeat = itertools.repeat
_cycle = itertools.cycle
_islice = itertools.islice
_uid = itertools.count()


def _repeat_call(send: Callable[[object], object], payload: object) -> Loop:
    """A loop calling ``send(payload)`` ``n`` times."""

    def run(n: int) -> None:
        for _ in _repeat(None, n):
            send(payload)

    return run


def passthrough(event: Event[Any]) -> Event[Any]:
    """The benchmarks' middleware: returns the event unchanged."""
    return event


class Implementation:
    """Base class: a named way of publishing events."""

    name: ClassVar[str] = "?"
    peer: ClassVar[bool] = True

    def fanout(self, handlers: Sequence[Handler], payload: object) -> Loop:
        raise NotImplementedError

    def round_robin(
        self, types: Sequence[enum.Enum], handlers: Sequence[Handler], payload: object
    ) -> Loop:
        raise NotImplementedError

    def scoped(self, handlers: Sequence[Handler], payload: object) -> Loop:
        raise NotImplementedError

    def close(self) -> None:
        """Release subscriptions (some peers keep global registries)."""


class Atlas(Implementation):
    """atlas-events ``EventBus.publish``.

    Args:
        history_limit: The bus's history size (the default bus keeps 1000).
        middleware: How many pass-through middlewares to add.
        event_type: The type published by :meth:`fanout` and :meth:`scoped`.
    """

    name = "atlas-events"
    peer = False

    bus_class: ClassVar[type[EventBus]] = EventBus

    def __init__(
        self, *, history_limit: int = 1000, middleware: int = 1, event_type: enum.Enum = TYPE
    ) -> None:
        self.history_limit = history_limit
        self.middleware = middleware
        self.event_type = event_type
        self.buses: list[EventBus] = []

    def bus(self, parent: EventBus | None = None, scope: str = "") -> EventBus:
        if parent is None:
            bus = self.bus_class(history_limit=self.history_limit, name="bench")
        else:
            bus = parent.scope(scope, history_limit=self.history_limit)
        self.buses.append(bus)
        return bus

    def _add_middleware(self, bus: EventBus) -> None:
        for _ in range(self.middleware):
            bus.add_middleware(passthrough)

    def _loop(self, bus: EventBus, payload: object) -> Loop:
        publish = bus.publish
        event_type = self.event_type

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                publish(event_type, payload)

        return run

    def fanout(self, handlers: Sequence[Handler], payload: object) -> Loop:
        bus = self.bus()
        self._add_middleware(bus)
        for h in handlers:
            bus.subscribe(self.event_type, h)
        return self._loop(bus, payload)

    def round_robin(
        self, types: Sequence[enum.Enum], handlers: Sequence[Handler], payload: object
    ) -> Loop:
        bus = self.bus()
        self._add_middleware(bus)
        for t, h in zip(types, handlers, strict=True):
            bus.subscribe(t, h)
        publish = bus.publish
        order = list(types)

        def run(n: int) -> None:
            for t in _islice(_cycle(order), n):
                publish(t, payload)

        return run

    def scoped(self, handlers: Sequence[Handler], payload: object) -> Loop:
        root = self.bus()
        mid = self.bus(root, "agents")
        leaf = self.bus(mid, "planner")
        self._add_middleware(leaf)
        for bus, h in zip((leaf, mid, root), handlers, strict=True):
            bus.subscribe(self.event_type, h)
        return self._loop(leaf, payload)

    def close(self) -> None:
        for bus in reversed(self.buses):
            bus.close()
        self.buses.clear()


class Blinker(Implementation):
    """Raw ``blinker.Signal.send`` (receivers connected the default, weak way)."""

    name = "blinker send"

    def __init__(self) -> None:
        import blinker

        self._signal = blinker.Signal
        self._keep: list[Handler] = []

    def _sig(self, handlers: Sequence[Handler]) -> Any:
        sig = self._signal()
        for h in handlers:
            sig.connect(h)
        self._keep.extend(handlers)
        return sig

    def fanout(self, handlers: Sequence[Handler], payload: object) -> Loop:
        return _repeat_call(self._sig(handlers).send, payload)

    def round_robin(
        self, types: Sequence[enum.Enum], handlers: Sequence[Handler], payload: object
    ) -> Loop:
        signals = {t: self._sig([h]) for t, h in zip(types, handlers, strict=True)}
        order = list(types)

        def run(n: int) -> None:
            for t in _islice(_cycle(order), n):
                signals[t].send(payload)

        return run

    def scoped(self, handlers: Sequence[Handler], payload: object) -> Loop:
        leaf, mid, root = (self._sig([h]).send for h in handlers)

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                leaf(payload)
                mid(payload)
                root(payload)

        return run

    def close(self) -> None:
        self._keep.clear()


class Pyee(Implementation):
    """``pyee.EventEmitter.emit``."""

    name = "pyee emit"

    def __init__(self) -> None:
        from pyee import EventEmitter

        self._emitter = EventEmitter

    def _ee(self, name: str, handlers: Sequence[Handler]) -> Any:
        ee = self._emitter()
        for h in handlers:
            ee.on(name, h)
        return ee

    def fanout(self, handlers: Sequence[Handler], payload: object) -> Loop:
        emit = self._ee("task.started", handlers).emit

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                emit("task.started", payload)

        return run

    def round_robin(
        self, types: Sequence[enum.Enum], handlers: Sequence[Handler], payload: object
    ) -> Loop:
        ee = self._emitter()
        names = [str(t.value) for t in types]
        for name, h in zip(names, handlers, strict=True):
            ee.on(name, h)
        emit = ee.emit

        def run(n: int) -> None:
            for name in _islice(_cycle(names), n):
                emit(name, payload)

        return run

    def scoped(self, handlers: Sequence[Handler], payload: object) -> Loop:
        leaf, mid, root = (self._ee("task.started", [h]).emit for h in handlers)

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                leaf("task.started", payload)
                mid("task.started", payload)
                root("task.started", payload)

        return run


class PyPubSub(Implementation):
    """PyPubSub ``pub.sendMessage`` (its global publisher; topics are unique per loop)."""

    name = "PyPubSub"

    def __init__(self) -> None:
        from pubsub import pub

        self._pub = pub
        self._topics: list[str] = []
        self._keep: list[Handler] = []

    def _topic(self, name: str, handlers: Sequence[Handler]) -> str:
        for h in handlers:
            self._pub.subscribe(h, name)
        self._keep.extend(handlers)
        self._topics.append(name.split(".")[0])
        return name

    def fanout(self, handlers: Sequence[Handler], payload: object) -> Loop:
        topic = self._topic(f"bench{next(_uid)}", handlers)
        send = self._pub.sendMessage

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                send(topic, data=payload)

        return run

    def round_robin(
        self, types: Sequence[enum.Enum], handlers: Sequence[Handler], payload: object
    ) -> Loop:
        base = f"bench{next(_uid)}"
        topics = [self._topic(f"{base}.t{i}", [h]) for i, h in enumerate(handlers[: len(types)])]
        send = self._pub.sendMessage

        def run(n: int) -> None:
            for topic in _islice(_cycle(topics), n):
                send(topic, data=payload)

        return run

    def scoped(self, handlers: Sequence[Handler], payload: object) -> Loop:
        # PyPubSub's topic tree forwards natively: a message on root.mid.leaf
        # reaches the listeners of root.mid and root too.
        root = f"bench{next(_uid)}"
        leaf_h, mid_h, root_h = handlers
        self._topic(root, [root_h])
        self._topic(f"{root}.agents", [mid_h])
        topic = self._topic(f"{root}.agents.planner", [leaf_h])
        send = self._pub.sendMessage

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                send(topic, data=payload)

        return run

    def close(self) -> None:
        mgr = self._pub.getDefaultTopicMgr()
        for name in set(self._topics):
            if mgr.getTopic(name, okIfNone=True) is not None:
                mgr.delTopic(name)
        self._topics.clear()
        self._keep.clear()


class PyDispatcher(Implementation):
    """PyDispatcher ``dispatcher.send`` (its global registry; signals are unique per loop)."""

    name = "PyDispatcher"

    def __init__(self) -> None:
        from pydispatch import dispatcher

        self._d = dispatcher
        self._connected: list[tuple[Handler, str]] = []

    def _signal(self, handlers: Sequence[Handler]) -> str:
        sig = f"bench{next(_uid)}"
        for h in handlers:
            self._d.connect(h, signal=sig, sender=self._d.Any)
            self._connected.append((h, sig))
        return sig

    def fanout(self, handlers: Sequence[Handler], payload: object) -> Loop:
        sig = self._signal(handlers)
        send = self._d.send
        anonymous = self._d.Anonymous

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                send(signal=sig, sender=anonymous, data=payload)

        return run

    def round_robin(
        self, types: Sequence[enum.Enum], handlers: Sequence[Handler], payload: object
    ) -> Loop:
        signals = [self._signal([h]) for h in handlers[: len(types)]]
        send = self._d.send
        anonymous = self._d.Anonymous

        def run(n: int) -> None:
            for sig in _islice(_cycle(signals), n):
                send(signal=sig, sender=anonymous, data=payload)

        return run

    def scoped(self, handlers: Sequence[Handler], payload: object) -> Loop:
        leaf, mid, root = (self._signal([h]) for h in handlers)
        send = self._d.send
        anonymous = self._d.Anonymous

        def run(n: int) -> None:
            for _ in _repeat(None, n):
                send(signal=leaf, sender=anonymous, data=payload)
                send(signal=mid, sender=anonymous, data=payload)
                send(signal=root, sender=anonymous, data=payload)

        return run

    def close(self) -> None:
        for h, sig in self._connected:
            self._d.disconnect(h, signal=sig, sender=self._d.Any)
        self._connected.clear()


class PlainLoop(Implementation):
    """The floor: a function that loops over a list of handlers."""

    name = "plain loop"

    def fanout(self, handlers: Sequence[Handler], payload: object) -> Loop:
        handler_list = list(handlers)

        def send(data: object) -> None:
            for h in handler_list:
                h(data)

        return _repeat_call(send, payload)

    def round_robin(
        self, types: Sequence[enum.Enum], handlers: Sequence[Handler], payload: object
    ) -> Loop:
        routes = {t: [h] for t, h in zip(types, handlers, strict=True)}
        order = list(types)

        def send(t: enum.Enum, data: object) -> None:
            for h in routes.get(t, ()):
                h(data)

        def run(n: int) -> None:
            for t in _islice(_cycle(order), n):
                send(t, payload)

        return run

    def scoped(self, handlers: Sequence[Handler], payload: object) -> Loop:
        levels = [[h] for h in handlers]

        def send(data: object) -> None:
            for level in levels:
                for h in level:
                    h(data)

        return _repeat_call(send, payload)


class AtlasBaseline(Atlas):
    """Another copy of atlas-events (e.g. an older commit), loaded by :func:`load_baseline`."""

    name = "atlas-events (baseline)"


def load_baseline(path: str | Path) -> str:
    """Import the ``atlas_events`` package found in ``path`` as a second copy.

    It is loaded under another module name, so both copies run side by side
    and :class:`AtlasBaseline` rows are measured in the same rounds as the
    working tree's. Returns where it was loaded from.
    """
    init = Path(path) / "atlas_events" / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"no atlas_events package in {path}")
    name = "_atlas_events_baseline"
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(f"cannot load {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    AtlasBaseline.bus_class = module.EventBus
    global IMPLEMENTATIONS
    if AtlasBaseline not in IMPLEMENTATIONS:
        IMPLEMENTATIONS = (Atlas, AtlasBaseline, *PEERS)
    return str(init.parent)


PEERS: tuple[type[Implementation], ...] = (Blinker, Pyee, PyPubSub, PyDispatcher, PlainLoop)
IMPLEMENTATIONS: tuple[type[Implementation], ...] = (Atlas, *PEERS)
"""atlas-events and the peers (plus :class:`AtlasBaseline` once one is loaded)."""

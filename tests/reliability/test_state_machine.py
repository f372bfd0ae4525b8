"""A hypothesis state machine that drives a bus tree and a simple model side by side.

The bus tree is a root and two nested scopes (``root -> a -> a/b``), each with
a small history (4 events) so that eviction is exercised. Rules subscribe
(strong functions, weak bound methods of components, bound methods with
``weak=False``, ``once``, filtered, handlers that raise, on a type or on
``ANY``), unsubscribe through the token (twice), publish on any level, add
and remove middleware (tagging, dropping, pass-through), delete components
(then ``gc.collect()``), close a scope (or the root) and create it again.

After every step: the calls the handlers received equal the model's, in
order; every history equals the model's tail; no handler was called after
its token ran or its owner died; ``stats()``, ``subscriber_count()`` and the
tokens' ``active`` agree with the model.
"""

from __future__ import annotations

import enum
import gc
import logging
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from atlas_events import (
    ANY,
    BusClosedError,
    Event,
    EventBus,
    EventType,
    HandlerFailure,
    Subscription,
)

from .conftest import profile

ET = EventType
LIMIT = 4


class Color(enum.Enum):
    """A user enum used as an event type next to the core ones."""

    RED = 1


PUBLISH_TYPES: tuple[enum.Enum, ...] = (ET.TASK_STARTED, Color.RED)
SUBSCRIBE_TYPES: tuple[enum.Enum, ...] = (*PUBLISH_TYPES, ANY, ET.HANDLER_ERROR)
# Subscriptions lean towards the root (which also sees every scope's events)
# and towards the published types, so that most publishes reach several handlers.
SUB_SLOTS = st.sampled_from([0, 0, 0, 1, 1, 2])
SUB_TYPES = st.sampled_from([0, 0, 1, 2, 2, 3])
RARELY = st.integers(0, 3).map(lambda n: n == 0)
SCOPE_NAMES = ("a", "b")


class Boom(Exception):
    """What a raising handler raises."""


def _label(t: enum.Enum) -> str:
    return "ANY" if t is ANY else f"{type(t).__name__}.{t.name}"


def _even(data: object) -> bool:
    return isinstance(data, int) and data % 2 == 0


def _dropped(data: object) -> bool:
    return isinstance(data, int) and data % 3 == 0


class Component:
    """Owner of bound-method handlers; ``cyclic`` ones are freed only by the collector."""

    def __init__(self, cyclic: bool) -> None:
        self.me = self if cyclic else None


# ----------------------------------------------------------------------- model

Seen = tuple[Any, ...]  # what a handler or the history shows of an event


@dataclass
class ModelEvent:
    type: enum.Enum
    data: Any  # an int, or ("err", failing sid, failed type, failed event id)
    scope: tuple[str, ...]
    tags: tuple[str, ...]
    link: tuple[str, str]  # ("id", id) for published events, ("parent", id) for errors
    seq: int = -1

    def seen(self) -> Seen:
        return (self.type, self.data, self.scope, self.tags, self.seq, self.link)


@dataclass
class Level:
    """The model of one bus."""

    slot: int
    bus: EventBus
    path: tuple[str, ...]
    parent: Level | None
    children: list[Level] = field(default_factory=list)
    subs: list[Sub] = field(default_factory=list)
    mws: list[Mw] = field(default_factory=list)
    closed: bool = False
    seq: int = 0
    history: list[Seen] = field(default_factory=list)
    delivered: int = 0
    dropped: int = 0
    errors: int = 0


@dataclass
class Sub:
    sid: int
    level: Level
    type: enum.Enum
    once: bool
    filtered: bool
    raises: bool
    comp: int | None  # owning component, for bound-method handlers
    weak: bool
    token: Subscription
    active: bool = True
    token_ran: bool = False
    owner_dead: bool = False


@dataclass
class Mw:
    mid: int
    level: Level
    kind: str  # "tag", "drop" or "pass"
    token: Subscription
    active: bool = True


class BusMachine(RuleBasedStateMachine):
    """Drives a real bus tree and the model with the same rules."""

    def __init__(self) -> None:
        super().__init__()
        self._log_level = logging.getLogger("atlas_events").level
        logging.getLogger("atlas_events").setLevel(logging.CRITICAL + 1)  # errors are expected
        self.levels: list[Level] = []  # every level ever created
        self.slots: list[Level] = []  # the current bus of slot 0 (root), 1 (a), 2 (a/b)
        self.subs: list[Sub] = []
        self.mws: list[Mw] = []
        self.comps: dict[int, Component] = {}
        self.pinned: set[int] = set()  # components kept alive by a weak=False subscription
        self.n_comps = 0
        self.calls: list[tuple[int, Seen]] = []
        self.expected: list[tuple[int, Seen]] = []
        self.violations: list[str] = []
        for slot in range(3):
            self.slots.append(self._new_level(slot))

    # ---------------------------------------------------------------- helpers

    def _new_level(self, slot: int) -> Level:
        if slot == 0:
            bus = EventBus(history_limit=LIMIT, name="root", nested="immediate")
            parent = None
        else:
            parent = self.slots[slot - 1]
            bus = parent.bus.scope(SCOPE_NAMES[slot - 1], history_limit=LIMIT)
        level = Level(slot, bus, bus.scope_path, parent)
        if parent is not None:
            parent.children.append(level)
        self.levels.append(level)
        return level

    def _on_call(self, sid: int, event: Event[Any]) -> None:
        sub = self.subs[sid]
        if sub.token_ran:
            self.violations.append(f"sub{sid} called after its token ran: {event!r}")
        if sub.owner_dead:
            self.violations.append(f"sub{sid} called after its owner died: {event!r}")
        data = event.data
        if isinstance(data, HandlerFailure):
            failure = data
            m = re.search(r"\bsub(\d+)\b", data.handler)
            data = ("err", int(m.group(1)) if m else data.handler, data.event_type, data.event_id)
            if not isinstance(failure.exception, Boom):
                self.violations.append(f"unexpected failure payload {event.data!r}")
        link = ("parent", event.parent_id) if event.type is ET.HANDLER_ERROR else ("id", event.id)
        self.calls.append(
            (sid, (event.type, data, event.scope, tuple(event.metadata), event.seq, link))
        )
        if sub.raises:
            raise Boom(f"sub{sid}")

    def _handler(self, sid: int, method: bool) -> Callable[..., None]:
        on_call = self._on_call
        if method:

            def handle(_owner: Component, event: Event[Any]) -> None:
                on_call(sid, event)

        else:

            def handle(event: Event[Any]) -> None:  # type: ignore[misc]
                on_call(sid, event)

        handle.__qualname__ = f"sub{sid}"
        return handle

    def _middleware(self, mid: int, kind: str) -> Callable[[Event[Any]], Event[Any] | None]:
        key = f"m{mid}"
        if kind == "tag":

            def mw(event: Event[Any]) -> Event[Any] | None:
                return attrs.evolve(event, metadata={**event.metadata, key: True})

        elif kind == "drop":

            def mw(event: Event[Any]) -> Event[Any] | None:
                return None if _dropped(event.data) else event

        else:

            def mw(event: Event[Any]) -> Event[Any] | None:
                return event

        mw.__qualname__ = key
        return mw

    def _alive(self, sub: Sub) -> bool:
        return sub.active and not sub.owner_dead

    # ----------------------------------------------------------- model engine

    def _emit(self, level: Level, ev: ModelEvent) -> None:
        """Model of ``_emit``: middleware, record, dispatch (raising -> report), forward."""
        for mw in [m for m in level.mws if m.active]:
            if mw.kind == "drop" and _dropped(ev.data):
                level.dropped += 1
                return
            if mw.kind == "tag":
                ev = attrs_replace(ev, tags=(*ev.tags, f"m{mw.mid}"))
        level.seq += 1
        ev = attrs_replace(ev, seq=level.seq)
        level.history.append(ev.seen())
        route = [s for s in level.subs if self._alive(s) and (s.type is ANY or s.type is ev.type)]
        for sub in route:
            if not self._alive(sub):  # a once handler that fired in a nested dispatch
                continue
            if sub.filtered and not _even(ev.data):
                continue
            if sub.once:
                sub.active = False
            self.expected.append((sub.sid, ev.seen()))
            level.delivered += 1
            if sub.raises:
                level.errors += 1
                if ev.type is not ET.HANDLER_ERROR:
                    failed_id = ev.link[1]
                    err = ModelEvent(
                        ET.HANDLER_ERROR,
                        ("err", sub.sid, ev.type, failed_id),
                        level.path,
                        (),
                        ("parent", failed_id),
                    )
                    self._emit(level, err)
        parent = level.parent
        if parent is not None and not parent.closed:
            self._emit(parent, ev)

    def _close(self, level: Level) -> None:
        if level.closed:
            return
        level.closed = True
        for child in level.children:
            self._close(child)
        for sub in level.subs:
            sub.active = False
        for mw in level.mws:
            mw.active = False

    # ------------------------------------------------------------------ rules

    @rule(
        slot=SUB_SLOTS,
        type_idx=SUB_TYPES,
        once=RARELY,
        filtered=RARELY,
        raises=st.integers(0, 2).map(lambda n: n == 0),
    )
    def subscribe_function(
        self, slot: int, type_idx: int, once: bool, filtered: bool, raises: bool
    ) -> None:
        """Subscribe a plain function (held strongly)."""
        self._subscribe(slot, SUBSCRIBE_TYPES[type_idx], once, filtered, raises, None, None)

    @rule(
        slot=SUB_SLOTS,
        type_idx=SUB_TYPES,
        comp_idx=st.integers(0, 1_000),
        once=RARELY,
        filtered=RARELY,
        weak=st.sampled_from([None, None, None, False]),
    )
    def subscribe_method(
        self,
        slot: int,
        type_idx: int,
        comp_idx: int,
        once: bool,
        filtered: bool,
        weak: bool | None,
    ) -> None:
        """Subscribe a component's bound method (weak by default, or ``weak=False``)."""
        if not self.comps:
            return
        cid = sorted(self.comps)[comp_idx % len(self.comps)]
        self._subscribe(slot, SUBSCRIBE_TYPES[type_idx], once, filtered, False, cid, weak)

    def _subscribe(
        self,
        slot: int,
        et: enum.Enum,
        once: bool,
        filtered: bool,
        raises: bool,
        cid: int | None,
        weak: bool | None,
    ) -> None:
        level = self.slots[slot]
        sid = len(self.subs)
        if cid is None:
            handler: Callable[[Event[Any]], Any] = self._handler(sid, method=False)
        else:
            handler = types.MethodType(self._handler(sid, method=True), self.comps[cid])
        flt = (lambda e: _even(e.data)) if filtered else None
        try:
            token = level.bus.subscribe(et, handler, weak=weak, filter=flt, once=once)
        except BusClosedError:
            assert level.closed
            return
        assert not level.closed, "subscribe on a closed bus succeeded"
        if cid is not None and weak is False:
            self.pinned.add(cid)
        sub = Sub(
            sid, level, et, once, filtered, raises, cid, cid is not None and weak is None, token
        )
        self.subs.append(sub)
        level.subs.append(sub)

    @rule(idx=st.integers(0, 10_000))
    def unsubscribe(self, idx: int) -> None:
        """Call a token twice: ``True`` then ``False`` if it was active, else ``False`` twice."""
        if not self.subs:
            return
        sub = self.subs[idx % len(self.subs)]
        expected = self._alive(sub)
        assert sub.token() is expected
        assert sub.token() is False
        sub.active = False
        sub.token_ran = True

    @rule(
        events=st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, len(PUBLISH_TYPES) - 1), st.integers(0, 5)),
            min_size=1,
            max_size=4,
        )
    )
    def publish(self, events: list[tuple[int, int, int]]) -> None:
        """Publish 1-4 events on any levels; a closed level raises BusClosedError."""
        for slot, type_idx, data in events:
            level = self.slots[slot]
            et = PUBLISH_TYPES[type_idx]
            try:
                eid = level.bus.publish(et, data)
            except BusClosedError:
                assert level.closed
                continue
            assert not level.closed, "publish on a closed bus succeeded"
            self._emit(level, ModelEvent(et, data, level.path, (), ("id", eid)))

    @rule(slot=st.integers(0, 2), kind=st.sampled_from(["tag", "drop", "pass"]))
    def add_middleware(self, slot: int, kind: str) -> None:
        """Add a tagging, dropping or pass-through middleware."""
        level = self.slots[slot]
        mid = len(self.mws)
        try:
            token = level.bus.add_middleware(self._middleware(mid, kind))
        except BusClosedError:
            assert level.closed
            return
        assert not level.closed, "add_middleware on a closed bus succeeded"
        mw = Mw(mid, level, kind, token)
        self.mws.append(mw)
        level.mws.append(mw)

    @rule(idx=st.integers(0, 10_000))
    def remove_middleware(self, idx: int) -> None:
        """Remove a middleware through its token (twice)."""
        if not self.mws:
            return
        mw = self.mws[idx % len(self.mws)]
        assert mw.token() is mw.active
        assert mw.token() is False
        mw.active = False

    @rule(cyclic=st.booleans())
    def new_component(self, cyclic: bool) -> None:
        """Create a component (some only the cycle collector can free)."""
        self.comps[self.n_comps] = Component(cyclic)
        self.n_comps += 1

    @rule(idx=st.integers(0, 1_000))
    def delete_component(self, idx: int) -> None:
        """Drop a component and collect: its weak handlers die with it."""
        if not self.comps:
            return
        cid = sorted(self.comps)[idx % len(self.comps)]
        del self.comps[cid]
        gc.collect()
        if cid in self.pinned:  # a weak=False subscription keeps it alive
            return
        for sub in self.subs:
            if sub.comp == cid:
                sub.owner_dead = True

    @rule(slot=st.sampled_from([1, 2, 1, 2, 0]))
    def close(self, slot: int) -> None:
        """Close a scope (or, less often, the root): it and its descendants close."""
        level = self.slots[slot]
        level.bus.close()
        self._close(level)

    @rule(slot=st.integers(0, 2))
    def reopen(self, slot: int) -> None:
        """Create a closed slot's bus again (a scope needs an open parent)."""
        level = self.slots[slot]
        if not level.closed:
            return
        if slot > 0 and self.slots[slot - 1].closed:
            try:
                self.slots[slot - 1].bus.scope(SCOPE_NAMES[slot - 1])
            except BusClosedError:
                return
            raise AssertionError("a scope was created under a closed bus")
        self.slots[slot] = self._new_level(slot)

    # ------------------------------------------------------------- invariants

    @invariant()
    def deliveries_match_model(self) -> None:
        """Handlers received exactly the model's calls, in order, and no forbidden call."""
        assert not self.violations, self.violations
        assert self.calls == self.expected
        self.calls.clear()
        self.expected.clear()

    @invariant()
    def histories_match_model(self) -> None:
        """Every bus's history equals the model's last ``LIMIT`` records."""
        for level in self.levels:
            got = [
                (
                    e.type,
                    self._seen_data(e),
                    e.scope,
                    tuple(e.metadata),
                    e.seq,
                    ("parent", e.parent_id) if e.type is ET.HANDLER_ERROR else ("id", e.id),
                )
                for e in level.bus.history()
            ]
            assert got == level.history[-LIMIT:], level.bus

    @staticmethod
    def _seen_data(event: Event[Any]) -> Any:
        data = event.data
        if isinstance(data, HandlerFailure):
            m = re.search(r"\bsub(\d+)\b", data.handler)
            return ("err", int(m.group(1)) if m else data.handler, data.event_type, data.event_id)
        return data

    @invariant()
    def stats_match_model(self) -> None:
        """``stats()`` counters, subscriber counts and token states agree with the model."""
        for level in self.levels:
            stats = level.bus.stats()
            subscribers: dict[str, int] = {}
            for sub in level.subs:
                if self._alive(sub):
                    subscribers[_label(sub.type)] = subscribers.get(_label(sub.type), 0) + 1
            assert stats["closed"] is level.closed
            assert stats["published"] == level.seq
            assert stats["delivered"] == level.delivered
            assert stats["dropped_by_middleware"] == level.dropped
            assert stats["handler_errors"] == level.errors
            assert stats["subscribers"] == subscribers
            assert stats["middleware"] == sum(m.active for m in level.mws)
            assert stats["history_size"] == min(level.seq, LIMIT)
            assert stats["history_limit"] == LIMIT
            assert stats["children"] == sum(not c.closed for c in level.children)
            assert level.bus.subscriber_count() == sum(subscribers.values())
        for sub in self.subs:
            assert sub.token.active is self._alive(sub), sub
        for mw in self.mws:
            assert mw.token.active is mw.active

    def teardown(self) -> None:
        for level in self.levels:
            level.bus.close()
        logging.getLogger("atlas_events").setLevel(self._log_level)


def attrs_replace(ev: ModelEvent, **changes: Any) -> ModelEvent:
    """A changed copy of a model event."""
    return ModelEvent(**{**ev.__dict__, **changes})


class TestBusAgainstModel(BusMachine.TestCase):  # type: ignore[misc,valid-type]
    """The bus tree agrees with the model after every step (300 examples x 40 steps in CI)."""

    settings = profile()
    pytestmark = pytest.mark.slow

    def setUp(self) -> None:
        # The delete rule runs a full collection; freezing what exists now
        # (pytest, hypothesis, the modules) keeps each one to the objects
        # the test itself created: ~1 ms instead of ~40 ms.
        gc.collect()
        gc.freeze()

    def tearDown(self) -> None:
        gc.unfreeze()

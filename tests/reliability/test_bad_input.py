"""Bad input, fuzzed: every outcome is a delivered event or a documented exception.

Each hypothesis example drives a fresh bus (sometimes one that raises
handler errors) through a random sequence of operations with random event
types, payloads, metadata, sources, correlation ids, handlers (random return
values, some raising), filters, middleware (random results, some raising)
and history queries. For every operation an oracle says which outcomes are
allowed: success, or the documented exception class for each bad argument
(``atlas_events.exceptions`` or the documented builtin). After every
operation the bus must still work (a canary event published through it is
delivered exactly once) and ``stats()`` must agree with what the handlers
and middleware observed.
"""

from __future__ import annotations

import enum
import logging
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_events import (
    ANY,
    Event,
    EventBus,
    EventType,
    HandlerError,
    HandlerFailure,
    InvalidEventTypeError,
    InvalidHandlerError,
    MiddlewareError,
    ScopeError,
)
from atlas_events.exceptions import AtlasEventsError, InvalidMiddlewareResultError

from .conftest import profile, scale

ET = EventType


class Color(enum.Enum):
    """A plain user enum."""

    RED = 1
    GREEN = 2


class Level(enum.IntEnum):
    """An int-valued user enum: ``Level.LOW == 1``."""

    LOW = 1


class Mode(enum.StrEnum):
    """A str-valued user enum: ``Mode.FAST == "fast"``."""

    FAST = "fast"


class Canary(enum.Enum):
    """The type of the probe event published after every operation."""

    PING = "ping"


GOOD_TYPES: list[enum.Enum] = [*EventType, Color.RED, Color.GREEN, Level.LOW, Mode.FAST]
# Values equal (and hash-equal) to a member, but not members: never event types.
IMPOSTORS: list[object] = [*(e.value for e in EventType), "fast", 1, 1.0, True, "RED"]


class Weird:
    """An object whose ``==``, ``hash()`` and ``bool()`` raise.

    Its ``repr()`` works: hypothesis prints it (see ``BadRepr`` for the other case).
    """

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __repr__(self) -> str:
        return "Weird()"

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.frozensets(st.integers(), max_size=3),
    st.complex_numbers(allow_nan=False),
    st.sampled_from([object(), Ellipsis, NotImplemented, enum.Enum, EventType, len]),
    st.builds(Weird),
)

event_types = st.one_of(
    st.sampled_from(GOOD_TYPES),
    st.sampled_from(GOOD_TYPES),
    st.just(ANY),
    st.sampled_from(IMPOSTORS),
    junk,
)
metadata_values = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.text(max_size=5), st.integers(), st.tuples(st.integers())),
        junk,
        max_size=4,
    ),
    st.dictionaries(st.text(max_size=5), junk, max_size=3).map(MappingProxyType),
    junk,
)
sources = st.one_of(st.none(), st.none(), st.text(max_size=5), junk)
correlations = st.one_of(st.none(), st.none(), st.text(min_size=1, max_size=5), junk)

ERRORS: list[type[Exception]] = [
    ValueError,
    KeyError,
    RuntimeError,
    ZeroDivisionError,
    TypeError,
    AtlasEventsError,
    LookupError,
]


def is_event_type(value: object, *, allow_any: bool) -> bool:
    """The documented rule: a member of an ``Enum`` (``ANY`` only where allowed)."""
    return isinstance(value, enum.Enum) and (allow_any or value is not ANY)


# --------------------------------------------------------------------- specs


@st.composite
def handler_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A handler that returns something random, or raises."""
    return {
        "returns": draw(junk),
        "raises": draw(st.one_of(st.none(), st.none(), st.sampled_from(ERRORS))),
    }


@st.composite
def middleware_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A middleware and what it does with every non-canary event."""
    kind = draw(
        st.sampled_from(
            ["same", "drop", "evolve_data", "evolve_type", "fresh", "replay", "junk", "raise"]
        )
    )
    return {
        "kind": kind,
        # ``None`` is a documented drop (kind "drop"), not a bad result.
        "junk": draw(junk.filter(lambda v: v is not None and not isinstance(v, Event)))
        if kind == "junk"
        else None,
        "error": draw(st.sampled_from(ERRORS)) if kind == "raise" else None,
        "data": draw(junk) if kind == "evolve_data" else None,
        "type": draw(st.sampled_from(GOOD_TYPES)) if kind == "evolve_type" else None,
    }


operations = st.one_of(
    st.tuples(
        st.just("publish"),
        event_types,
        junk,
        metadata_values,
        sources,
        correlations,
    ),
    st.tuples(st.just("publish_event"), st.one_of(st.sampled_from(GOOD_TYPES), junk)),
    st.tuples(
        st.just("subscribe"),
        event_types,
        st.one_of(
            handler_specs(),
            handler_specs(),
            junk.map(lambda v: ("junk", v)),
            st.just(("arity", 0)),
            st.just(("arity", 2)),
        ),
        st.one_of(st.none(), st.none(), st.booleans(), junk),  # weak
        st.one_of(st.none(), st.none(), st.just("odd"), junk.map(lambda v: ("junk", v))),  # filter
        st.one_of(st.booleans(), junk),  # once
    ),
    st.tuples(
        st.just("middleware"),
        st.one_of(middleware_specs(), junk.map(lambda v: ("junk", v)), st.just(("arity", 2))),
    ),
    st.tuples(st.just("unsubscribe"), st.integers(0, 100)),
    st.tuples(st.just("history"), st.one_of(st.none(), event_types), st.one_of(st.none(), junk)),
    st.tuples(st.just("scope"), st.one_of(st.text(max_size=4), junk)),
)


# -------------------------------------------------------------------- driver


@dataclass
class Observed:
    """What the handlers and middleware saw, for checking ``stats()``."""

    calls: int = 0
    raises: int = 0
    drops: int = 0
    canary: int = 0
    tokens: list[tuple[str, Any]] = field(default_factory=list)


def _label(t: enum.Enum) -> str:
    return "ANY" if t is ANY else f"{type(t).__name__}.{t.name}"


class Driver:
    """Runs operations against one bus and checks each outcome."""

    def __init__(self, strict: bool) -> None:
        self.bus = EventBus(history_limit=10_000, raise_handler_errors=strict, name="fuzz")
        self.strict = strict
        self.seen = Observed()
        self.bus.subscribe(Canary.PING, self._on_canary)

    def _on_canary(self, event: Event[Any]) -> None:
        self.seen.calls += 1
        self.seen.canary += 1

    # -- building handlers and middleware ----------------------------------

    def _handler(self, spec: Any) -> Any:
        if isinstance(spec, tuple) and spec[0] == "junk":
            return spec[1]
        if isinstance(spec, tuple) and spec[0] == "arity":
            return (lambda: None) if spec[1] == 0 else (lambda a, b: None)
        seen = self.seen

        def handler(event: Event[Any]) -> Any:
            seen.calls += 1
            _check_event(event)
            if spec["raises"] is not None:
                seen.raises += 1
                raise spec["raises"]("handler failed on purpose")
            return spec["returns"]

        return handler

    def _middleware(self, spec: Any) -> Any:
        if isinstance(spec, tuple) and spec[0] == "junk":
            return spec[1]
        if isinstance(spec, tuple) and spec[0] == "arity":
            return lambda a, b: a
        seen = self.seen
        bus = self.bus
        kind = spec["kind"]

        def middleware(event: Event[Any]) -> Any:
            if event.type is Canary.PING:
                return event
            if kind == "drop":
                seen.drops += 1
                return None
            if kind == "evolve_data":
                return attrs.evolve(event, data=spec["data"])
            if kind == "evolve_type":
                return attrs.evolve(event, type=spec["type"])
            if kind == "fresh":
                return Event.create(event.type, event.data, source="mw")
            if kind == "replay":
                old = bus.history(limit=1)
                return old[0] if old else event
            if kind == "junk":
                return spec["junk"]
            if kind == "raise":
                raise spec["error"]("middleware failed on purpose")
            return event

        return middleware

    # -- operations ----------------------------------------------------------

    def run(self, op: tuple[Any, ...]) -> None:
        getattr(self, f"op_{op[0]}")(*op[1:])
        self.check()

    def _expect(
        self,
        allowed: list[type[BaseException]],
        fn: Callable[[], Any],
        *,
        may_succeed: bool = False,
    ) -> Any:
        """Run ``fn``: it must raise one of ``allowed``, or succeed if that is allowed.

        Success is allowed when ``allowed`` is empty or ``may_succeed``. On a
        bus that raises handler errors, an ``ExceptionGroup`` of
        :class:`HandlerError` also counts as success (the handlers ran); it
        is returned.
        """
        try:
            result = fn()
        except ExceptionGroup as group:
            if not self.strict or not all(isinstance(e, HandlerError) for e in group.exceptions):
                raise AssertionError(f"unexpected {group!r}") from group
            if allowed and not may_succeed:
                raise AssertionError(f"expected one of {allowed}, got {group!r}") from group
            for err in group.exceptions:
                assert isinstance(err.__cause__, tuple(ERRORS)), err
            return group
        except Exception as exc:
            if not isinstance(exc, tuple(allowed)):
                raise AssertionError(f"raised {exc!r}, expected one of {allowed}") from exc
            if isinstance(exc, MiddlewareError) and not isinstance(exc.__cause__, Exception):
                raise AssertionError(f"{exc!r} does not carry its cause") from exc
            return exc
        assert not allowed or may_succeed, (
            f"bad input accepted (expected one of {allowed}), returned {result!r}"
        )
        return result

    @property
    def middlewares(self) -> list[dict[str, Any]]:
        return [spec for kind, (t, spec) in self.seen.tokens if kind == "mw" and t.active]

    def _middleware_outcome(self) -> list[type[BaseException]]:
        """The exception the middleware chain raises for a fuzz event, if any."""
        for spec in self.middlewares:
            if spec["kind"] == "drop":
                return []
            if spec["kind"] == "junk":
                return [InvalidMiddlewareResultError]
            if spec["kind"] == "raise":
                return [MiddlewareError]
        return []

    def op_publish(
        self, et: object, data: object, metadata: object, source: object, cid: object
    ) -> None:
        allowed: list[type[BaseException]] = []
        if not is_event_type(et, allow_any=False):
            allowed.append(InvalidEventTypeError)
        if metadata is not None and not isinstance(metadata, (dict, MappingProxyType)):
            allowed.append(TypeError)
        if source is not None and not isinstance(source, str):
            allowed.append(TypeError)
        if cid is not None and not isinstance(cid, str):
            allowed.append(TypeError)
        if not allowed:
            allowed = self._middleware_outcome()
        raised_before = self.seen.raises
        result = self._expect(
            allowed,
            lambda: self.bus.publish(  # type: ignore[call-overload]
                et,
                data,
                metadata=metadata,
                source=source,
                correlation_id=cid,
            ),
        )
        if isinstance(result, ExceptionGroup):
            assert len(result.exceptions) == self.seen.raises - raised_before
        elif self.strict:
            assert self.seen.raises == raised_before
        if isinstance(result, str) and all(m["kind"] == "same" for m in self.middlewares):
            last = next(e for e in reversed(self.bus.history()) if e.id == result)
            assert last.type is et
            assert last.data is data
            assert isinstance(last.metadata, MappingProxyType)
            assert dict(last.metadata) == (dict(metadata) if metadata else {})  # type: ignore[call-overload]
            assert last.source == source
            assert last.correlation_id == cid

    def op_publish_event(self, value: object) -> None:
        if isinstance(value, enum.Enum):
            event = Event.create(value, {"x": 1})
            self._expect(self._middleware_outcome(), lambda: self.bus.publish_event(event))
        else:
            self._expect([TypeError], lambda: self.bus.publish_event(value))  # type: ignore[arg-type]

    def op_subscribe(self, et: object, spec: Any, weak: object, flt: Any, once: object) -> None:
        handler = self._handler(spec)
        ours = isinstance(spec, dict)
        bad: list[type[BaseException]] = []  # certainly rejected
        maybe: list[type[BaseException]] = []  # a junk callable whose signature may fit
        if not is_event_type(et, allow_any=True):
            bad.append(InvalidEventTypeError)
        if not isinstance(once, bool):
            bad.append(TypeError)
        if weak is not None and not isinstance(weak, bool):
            bad.append(TypeError)
        if not callable(handler) or (not ours and spec[0] == "arity"):
            bad.append(InvalidHandlerError)
        elif not ours:
            maybe.append(InvalidHandlerError)
        if weak is True and callable(handler) and not _weakrefable(handler):
            bad.append(InvalidHandlerError)
        filter_fn: Any = None
        if flt == "odd":
            filter_fn = _odd
        elif flt is not None and flt[1] is not None:
            filter_fn = flt[1]
            (maybe if callable(filter_fn) else bad).append(InvalidHandlerError)
        token = self._expect(
            bad + maybe,
            lambda: self.bus.subscribe(  # type: ignore[call-overload]
                et,
                handler,
                weak=weak,
                filter=filter_fn,
                once=once,
            ),
            may_succeed=not bad,
        )
        if isinstance(token, Exception):
            return
        assert isinstance(et, enum.Enum)
        if maybe:
            token()  # a junk callable was accepted: it may raise on events; remove it
            return
        self.seen.tokens.append(("sub", (token, _label(et))))

    def op_middleware(self, spec: Any) -> None:
        fn = self._middleware(spec)
        ours = isinstance(spec, dict)
        token = self._expect(
            [] if ours else [InvalidHandlerError],
            lambda: self.bus.add_middleware(fn),
            may_succeed=ours or (callable(fn) and spec[0] == "junk"),
        )
        if isinstance(token, Exception):
            return
        if not ours:
            token()  # a junk callable accepted as middleware: remove it again
            return
        self.seen.tokens.append(("mw", (token, spec)))

    def op_unsubscribe(self, idx: int) -> None:
        if not self.seen.tokens:
            return
        _kind, (token, _info) = self.seen.tokens[idx % len(self.seen.tokens)]
        was = token.active
        assert token() is was
        assert token() is False

    def op_history(self, et: object, limit: object) -> None:
        allowed: list[type[BaseException]] = []
        if et is not None and not is_event_type(et, allow_any=True):
            allowed.append(InvalidEventTypeError)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            allowed.append(ValueError)
        result = self._expect(
            allowed,
            lambda: self.bus.history(et, limit=limit),  # type: ignore[call-overload]
        )
        if isinstance(result, list):
            assert all(isinstance(e, Event) for e in result)

    def op_scope(self, name: object) -> None:
        bad = not isinstance(name, str) or not name or "/" in name
        child = self._expect([ScopeError] if bad else [], lambda: self.bus.scope(name))  # type: ignore[arg-type]
        if isinstance(child, Exception):
            return
        # Forwarded to the fuzzed bus: its middleware applies there (and may raise).
        self._expect(
            self._middleware_outcome(), lambda: child.publish(ET.TASK_STARTED, "from child")
        )
        child.close()

    # -- the invariant -------------------------------------------------------

    def check(self) -> None:
        """The bus still works and its stats agree with what was observed."""
        before = self.seen.canary
        event_id = self.bus.publish(Canary.PING, None)
        assert self.seen.canary == before + 1
        assert self.bus.history(limit=1)[0].id == event_id
        stats = self.bus.stats()
        hist = self.bus.history()
        assert stats["published"] == len(hist) == self.bus.last_seq
        assert [e.seq for e in hist] == list(range(1, len(hist) + 1))
        assert all(isinstance(e.type, enum.Enum) and e.type is not ANY for e in hist)
        assert stats["delivered"] == self.seen.calls
        assert stats["handler_errors"] == self.seen.raises
        assert stats["dropped_by_middleware"] == self.seen.drops
        expected: dict[str, int] = {"Canary.PING": 1}
        for kind, (token, info) in self.seen.tokens:
            if kind == "sub" and token.active:
                expected[info] = expected.get(info, 0) + 1
        assert stats["subscribers"] == expected
        assert stats["middleware"] == len(self.middlewares)
        reports = [e for e in hist if e.type is ET.HANDLER_ERROR and e.source == "atlas_events"]
        assert all(isinstance(e.data, HandlerFailure) for e in reports)
        assert len(reports) <= self.seen.raises


def _odd(event: Event[Any]) -> bool:
    return isinstance(event.data, int) and event.data % 2 == 1


def _weakrefable(obj: object) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _check_event(event: Event[Any]) -> None:
    """What every handler may rely on, whatever was published."""
    if not isinstance(event, Event):
        raise AssertionError(f"handler got {event!r}")
    if not isinstance(event.type, enum.Enum) or event.type is ANY:
        raise AssertionError(f"event type {event.type!r} is not an enum member")
    if not isinstance(event.metadata, MappingProxyType):
        raise AssertionError("metadata is not read-only")


@pytest.fixture(autouse=True)
def _quiet_handler_errors() -> Iterator[None]:
    """Handler and middleware failures are expected here: keep the log quiet."""
    logger = logging.getLogger("atlas_events")
    old = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(old)


@profile(max_examples=scale(600, 150))
@given(strict=st.booleans(), ops=st.lists(operations, min_size=1, max_size=10))
def test_bad_input_never_corrupts_the_bus(strict: bool, ops: list[tuple[Any, ...]]) -> None:
    """Random operations with random arguments: documented outcomes only, bus intact."""
    driver = Driver(strict)
    try:
        for op in ops:
            driver.run(op)
    finally:
        driver.bus.close()


@profile(max_examples=scale(300, 100))
@given(value=st.sampled_from(IMPOSTORS), seeded=st.booleans())
def test_values_equal_to_members_are_not_event_types(value: object, seeded: bool) -> None:
    """``"task.started"``, ``1`` or ``"fast"`` are rejected even after the member was used."""
    bus = EventBus(name="impostors")
    if seeded:  # the member's route exists: the fast path must still reject the value
        for t in GOOD_TYPES:
            bus.publish(t)
    with pytest.raises(InvalidEventTypeError):
        bus.publish(value)  # type: ignore[call-overload]
    assert all(isinstance(e.type, enum.Enum) for e in bus.history())
    assert bus.stats()["published"] == (len(GOOD_TYPES) if seeded else 0)
    bus.close()


def test_unhashable_event_type_is_a_clear_error() -> None:
    """An unhashable value as event type raises InvalidEventTypeError, not a bare TypeError."""
    bus = EventBus(name="unhashable")
    bus.publish(ET.TASK_STARTED)
    for value in ([1], {"a": 1}, {1}):
        with pytest.raises(InvalidEventTypeError, match="Enum member"):
            bus.publish(value)  # type: ignore[call-overload]
        with pytest.raises(InvalidEventTypeError):
            bus.subscribe(value, print)  # type: ignore[call-overload]
    assert bus.stats()["published"] == 1
    bus.close()


class BadRepr:
    """A callable whose ``repr()`` and ``str()`` raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__

    def __call__(self, a: object, b: object) -> None:  # two arguments: not a handler
        pass


class BadStr(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_error_messages_survive_hostile_and_huge_values() -> None:
    """A failing ``repr``/``str`` or a huge value still gives the documented, short error."""
    bus = EventBus(name="hostile")
    huge = list(range(1_000_000))
    cases: list[tuple[type[Exception], Callable[[], Any]]] = [
        (InvalidEventTypeError, lambda: bus.publish(BadRepr())),  # type: ignore[call-overload]
        (InvalidEventTypeError, lambda: bus.publish(huge)),  # type: ignore[call-overload]
        (InvalidEventTypeError, lambda: bus.subscribe(huge, print)),  # type: ignore[call-overload]
        (InvalidHandlerError, lambda: bus.subscribe(ET.TASK_STARTED, BadRepr())),  # type: ignore[arg-type]
        (InvalidHandlerError, lambda: bus.add_middleware(BadRepr())),  # type: ignore[arg-type]
    ]
    for expected, call in cases:
        with pytest.raises(expected) as info:
            call()
        assert len(str(info.value)) < 500

    def raising(event: Event[Any]) -> None:
        raise BadStr

    class Middleware:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __call__(self, event: Event[Any]) -> Event[Any]:
            raise BadStr

    token = bus.add_middleware(Middleware())
    with pytest.raises(MiddlewareError):
        bus.publish(ET.TASK_STARTED)
    token()
    strict = EventBus(raise_handler_errors=True, name="strict")
    strict.subscribe(ET.TASK_STARTED, raising)
    with pytest.raises(ExceptionGroup) as group:
        strict.publish(ET.TASK_STARTED)
    assert isinstance(group.value.exceptions[0], HandlerError)
    assert bus.publish(ET.TASK_STARTED)  # still usable
    bus.close()
    strict.close()

"""Tests for EventBus: subscribe, publish, tokens, errors, middleware, history, stats."""

from __future__ import annotations

import enum
import logging
import sys
import threading
from typing import Any

import attrs
import blinker
import pytest

from atlas_events import (
    ANY,
    BusClosedError,
    Event,
    EventBus,
    EventType,
    HandlerError,
    HandlerFailure,
    InvalidEventTypeError,
    InvalidHandlerError,
    PayloadTypeError,
    RecursionDepthError,
    correlate,
    current_correlation_id,
    declare,
)
from atlas_events.middleware import DropTypes

from .conftest import Color

ET = EventType


# --------------------------------------------------------------- seed usage


def test_seed_usage_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    """The design card's example works as written, lambda and all."""
    bus = EventBus()
    unsubscribe = bus.subscribe(EventType.STREAM_STARTED, lambda e: print(e.data))
    bus.publish(EventType.STREAM_STARTED, {"stream_id": "s1"})
    assert capsys.readouterr().out == "{'stream_id': 's1'}\n"
    unsubscribe()
    bus.publish(EventType.STREAM_STARTED, {"stream_id": "s2"})
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------- tokens


def test_token_is_idempotent_and_reports_state(bus: EventBus) -> None:
    """Calling a token returns True once, then False; .active follows."""
    tok = bus.subscribe(ET.TASK_STARTED, lambda e: None)
    assert tok.active
    assert tok() is True
    assert not tok.active
    assert tok() is False
    assert tok.unsubscribe() is False
    assert "inactive" in repr(tok)


def test_token_as_context_manager(bus: EventBus) -> None:
    """`with bus.subscribe(...)` scopes the subscription to the block."""
    got: list[int] = []
    with bus.subscribe(ET.TASK_STARTED, lambda e: got.append(e.data)) as tok:
        bus.publish(ET.TASK_STARTED, 1)
    bus.publish(ET.TASK_STARTED, 2)
    assert got == [1]
    assert not tok.active


def test_token_is_thread_safe(bus: EventBus) -> None:
    """Many threads calling one token: exactly one gets True."""
    tok = bus.subscribe(ET.TASK_STARTED, lambda e: None)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        results.append(tok())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(results) == [False] * 7 + [True]


# ----------------------------------------------------------------- ordering


def test_handlers_run_in_subscription_order_with_any_interleaved(bus: EventBus) -> None:
    """ANY and type-specific handlers interleave in the order they were subscribed."""
    calls: list[str] = []
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("t1"))
    bus.subscribe(ANY, lambda e: calls.append("any1"))
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("t2"))
    bus.subscribe(ANY, lambda e: calls.append("any2"))
    bus.publish(ET.TASK_STARTED)
    assert calls == ["t1", "any1", "t2", "any2"]
    calls.clear()
    bus.publish(ET.TASK_COMPLETED)
    assert calls == ["any1", "any2"]


def test_any_subscribed_after_first_publish_still_receives(bus: EventBus) -> None:
    """An ANY subscription reaches types whose dispatch snapshot already exists."""
    got: list[Any] = []
    bus.publish(ET.TASK_STARTED, 0)
    bus.subscribe(ANY, lambda e: got.append(e.data))
    bus.publish(ET.TASK_STARTED, 1)
    bus.publish(Color.RED, 2)
    assert got == [1, 2]


def test_filter_and_once(bus: EventBus) -> None:
    """filter= selects events; once=True delivers one event then unsubscribes."""
    evens: list[int] = []
    first: list[int] = []
    bus.subscribe(ET.TASK_STARTED, lambda e: evens.append(e.data), filter=lambda e: e.data % 2 == 0)
    tok = bus.subscribe(ET.TASK_STARTED, lambda e: first.append(e.data), once=True)
    for i in range(5):
        bus.publish(ET.TASK_STARTED, i)
    assert evens == [0, 2, 4]
    assert first == [0]
    assert not tok.active
    assert tok() is False
    assert bus.stats()["delivered"] == 3 + 1


def test_once_with_filter_waits_for_a_match(bus: EventBus) -> None:
    """A once+filter handler fires on the first *matching* event only."""
    got: list[int] = []
    bus.subscribe(
        ET.TASK_STARTED, lambda e: got.append(e.data), once=True, filter=lambda e: e.data > 2
    )
    for i in range(6):
        bus.publish(ET.TASK_STARTED, i)
    assert got == [3]


# ------------------------------------------------------------------- errors


def test_handler_error_is_isolated_and_reported(bus: EventBus) -> None:
    """A raising handler does not stop the others; HANDLER_ERROR carries the details."""
    calls: list[str] = []
    failures: list[Event[Any]] = []

    def boom(e: Event[Any]) -> None:
        raise ValueError("boom")

    bus.subscribe(ET.HANDLER_ERROR, failures.append)
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("before"))
    bus.subscribe(ET.TASK_STARTED, boom)
    bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("after"))
    event_id = bus.publish(ET.TASK_STARTED)
    assert calls == ["before", "after"]
    (err,) = failures
    info = err.data
    assert isinstance(info, HandlerFailure)
    assert info.event_id == event_id
    assert info.event_type is ET.TASK_STARTED
    assert info.handler.endswith("test_handler_error_is_isolated_and_reported.<locals>.boom")
    assert isinstance(info.exception, ValueError)
    assert err.parent_id == event_id
    assert "boom" in str(info)
    assert bus.stats()["handler_errors"] == 1


def test_error_in_handler_error_handler_is_logged_not_recursed(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A HANDLER_ERROR handler that raises is logged once, never re-reported."""
    seen: list[Event[Any]] = []

    def bad_error_handler(e: Event[Any]) -> None:
        seen.append(e)
        raise RuntimeError("error handler broke")

    bus.subscribe(ET.HANDLER_ERROR, bad_error_handler)
    bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="atlas_events"):
        bus.publish(ET.TASK_STARTED)
    assert len(seen) == 1
    assert bus.stats()["handler_errors"] == 2
    assert any("error handler broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert len(bus.history(ET.HANDLER_ERROR)) == 1


def test_unobserved_handler_errors_are_logged(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """With no HANDLER_ERROR subscriber, a failure is logged at ERROR (never silent)."""
    bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="atlas_events"):
        bus.publish(ET.TASK_STARTED)
    assert any("no HANDLER_ERROR subscriber" in r.getMessage() for r in caplog.records)


def test_raise_handler_errors_mode(strict_bus: EventBus) -> None:
    """raise_handler_errors=True raises an ExceptionGroup after every handler ran."""
    calls: list[str] = []
    strict_bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    strict_bus.subscribe(ET.TASK_STARTED, lambda e: calls.append("ran"))
    strict_bus.subscribe(ET.TASK_STARTED, lambda e: [][0])
    with pytest.raises(ExceptionGroup) as info:
        strict_bus.publish(ET.TASK_STARTED)
    assert calls == ["ran"]
    errors = info.value.exceptions
    assert [type(e.__cause__) for e in errors] == [ZeroDivisionError, IndexError]
    assert all(isinstance(e, HandlerError) for e in errors)
    assert len(strict_bus.history()) == 1  # recorded, no HANDLER_ERROR event


# ---------------------------------------------------------------- signals


def test_signals_are_private_per_bus() -> None:
    """Each bus has its own blinker signals; the global namespace is untouched."""
    before = dict(blinker.default_namespace)
    a, b = EventBus(), EventBus()
    sa, sb = a.get_signal(ET.TASK_STARTED), b.get_signal(ET.TASK_STARTED)
    assert isinstance(sa, blinker.Signal)
    assert sa is not sb
    assert a.get_signal(ET.TASK_STARTED) is sa
    assert dict(blinker.default_namespace) == before


def test_signal_holds_the_subscriptions_and_send_reaches_them(bus: EventBus) -> None:
    """The private signal is the registry: receivers appear there, and send() calls them."""
    got: list[Any] = []
    tok = bus.subscribe(ET.TASK_STARTED, got.append, filter=lambda e: e.data == 1)
    sig = bus.get_signal(ET.TASK_STARTED)
    assert len(sig.receivers) == 1
    ev = Event.create(ET.TASK_STARTED, 1)
    sig.send(ev)
    sig.send(Event.create(ET.TASK_STARTED, 2))
    assert got == [ev]
    tok()
    assert len(sig.receivers) == 0


# ------------------------------------------------------------------- stats


def test_stats_counts(bus: EventBus) -> None:
    """stats() reports published, delivered, subscribers per type, history size and limit."""
    bus.subscribe(ET.TASK_STARTED, lambda e: None)
    bus.subscribe(ANY, lambda e: None)
    bus.publish(ET.TASK_STARTED)
    bus.publish(ET.TASK_COMPLETED)
    s = bus.stats()
    assert s["published"] == 2
    assert s["delivered"] == 3
    assert s["subscribers"] == {"EventType.TASK_STARTED": 1, "ANY": 1}
    assert s["history_size"] == 2
    assert s["history_limit"] == 1000
    assert s["handler_errors"] == 0
    assert s["dropped_by_middleware"] == 0
    assert bus.subscriber_count() == 2
    assert bus.subscriber_count(ET.TASK_STARTED) == 1


def test_stats_stay_exact_while_another_thread_publishes() -> None:
    """Every stats() taken during concurrent publishes is one consistent cut of the counters.

    published, delivered and history_size are read under the recording lock
    together, so each sample satisfies the same equalities as a quiet bus;
    the subscriber counts (read from the registry) are unaffected by
    publishes; clear_history() meanwhile empties the history and the
    counters keep counting.
    """
    bus = EventBus(history_limit=50)
    for _ in range(2):
        bus.subscribe(ET.TASK_STARTED, lambda e: None)
    bus.subscribe(ANY, lambda e: None)
    n = 5000
    go, halfway, cleared = threading.Event(), threading.Event(), threading.Event()

    def publisher() -> None:
        go.wait(10)
        for i in range(n):
            if i == n // 2:
                halfway.set()
            elif i == 3 * n // 4:
                cleared.wait(10)  # the clear has happened, while this thread published
            bus.publish(ET.TASK_STARTED if i % 2 else ET.TASK_COMPLETED, i)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the two threads often
    thread = threading.Thread(target=publisher)
    samples = 0
    cleared_at: int | None = None
    try:
        thread.start()
        go.set()
        while thread.is_alive() or samples == 0:
            s = bus.stats()
            published = s["published"]
            # TASK_STARTED (odd i): 3 handlers; TASK_COMPLETED (even i): ANY only.
            assert s["delivered"] == published + 2 * (published // 2)
            assert s["subscribers"] == {"EventType.TASK_STARTED": 2, "ANY": 1}
            if cleared_at is None:
                assert s["history_size"] == min(published, 50)
                if halfway.is_set():
                    bus.clear_history()
                    cleared_at = published
                    cleared.set()
            else:
                assert s["history_size"] <= min(published - cleared_at, 50)
            samples += 1
    finally:
        sys.setswitchinterval(interval)
        cleared.set()
        thread.join(10)
    assert cleared_at is not None
    assert samples > 1
    s = bus.stats()
    assert s["published"] == n
    assert s["delivered"] == n + 2 * (n // 2)
    assert s["history_size"] == 50
    assert [e.data for e in bus.history()] == list(range(n - 50, n))


# ------------------------------------------------------------- close / ctx


def test_close_and_context_manager() -> None:
    """After close, publish and subscribe raise BusClosedError; tokens go inactive."""
    with EventBus(name="ctx") as b:
        tok = b.subscribe(ET.TASK_STARTED, lambda e: None)
    assert b.closed
    assert not tok.active
    with pytest.raises(BusClosedError, match="'ctx' is closed") as info:
        b.publish(ET.TASK_STARTED)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(BusClosedError):
        b.subscribe(ET.TASK_STARTED, lambda e: None)
    with pytest.raises(BusClosedError):
        b.publish_event(Event.create(ET.TASK_STARTED))
    b.close()  # idempotent


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", ["task.started", 3, None, object(), ANY])
def test_publish_rejects_non_enum_types(bus: EventBus, bad: Any) -> None:
    """Publishing a non-enum type (or ANY) raises InvalidEventTypeError; bus intact."""
    with pytest.raises(InvalidEventTypeError):
        bus.publish(bad)
    assert bus.stats()["published"] == 0
    bus.publish(ET.TASK_STARTED)
    assert bus.stats()["published"] == 1


@pytest.mark.parametrize("bad", ["x", 1, None])
def test_subscribe_rejects_non_enum_types(bus: EventBus, bad: Any) -> None:
    """Subscribing with a non-enum type raises InvalidEventTypeError."""
    with pytest.raises(InvalidEventTypeError):
        bus.subscribe(bad, lambda e: None)
    assert bus.subscriber_count() == 0


def test_subscribe_rejects_bad_handlers(bus: EventBus) -> None:
    """Non-callables and callables of the wrong arity are refused, nothing registered."""
    with pytest.raises(InvalidHandlerError, match="expected a callable"):
        bus.subscribe(ET.TASK_STARTED, "nope")  # type: ignore[call-overload]
    with pytest.raises(InvalidHandlerError, match="one positional argument"):
        bus.subscribe(ET.TASK_STARTED, lambda: None)  # type: ignore[call-overload]
    with pytest.raises(InvalidHandlerError, match="one positional argument"):
        bus.subscribe(ET.TASK_STARTED, lambda a, b: None)  # type: ignore[call-overload]
    with pytest.raises(InvalidHandlerError, match="filter"):
        bus.subscribe(ET.TASK_STARTED, lambda e: None, filter=42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="once"):
        bus.subscribe(ET.TASK_STARTED, lambda e: None, once="yes")  # type: ignore[call-overload]
    with pytest.raises(InvalidHandlerError, match="middleware"):
        bus.add_middleware(None)  # type: ignore[arg-type]
    assert bus.subscriber_count() == 0
    assert bus.stats()["middleware"] == 0


def test_publish_rejects_bad_fields(bus: EventBus) -> None:
    """Bad metadata, source or correlation id raise TypeError; nothing recorded."""
    with pytest.raises(TypeError, match="metadata"):
        bus.publish(ET.TASK_STARTED, metadata=[1, 2])  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="source"):
        bus.publish(ET.TASK_STARTED, source=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="correlation_id"):
        bus.publish(ET.TASK_STARTED, correlation_id=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="Event"):
        bus.publish_event("not an event")  # type: ignore[arg-type]
    assert bus.history() == []


# ------------------------------------------------------------ typed payloads


@attrs.frozen
class Done:
    """A payload class for typed-key tests."""

    task: str


DONE = declare(ET.TASK_COMPLETED, Done)


def test_typed_key_checks_payloads(bus: EventBus) -> None:
    """Publishing through a key checks the payload; a wrong one raises, nothing recorded."""
    got: list[Event[Done]] = []
    bus.subscribe(DONE, got.append)
    bus.publish(DONE, Done("a"))
    with pytest.raises(PayloadTypeError, match="carries Done payloads, got str") as info:
        bus.publish(DONE, "oops")  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert [e.data for e in got] == [Done("a")]
    assert len(bus.history()) == 1


def test_declared_type_checks_bare_enum_publishes(bus: EventBus) -> None:
    """After bus.declare(key), even the bare enum member is checked, on every scope."""
    bus.declare(DONE)
    child = bus.scope("child")
    with pytest.raises(PayloadTypeError):
        bus.publish(ET.TASK_COMPLETED, {"task": "a"})
    with pytest.raises(PayloadTypeError):
        child.publish(ET.TASK_COMPLETED, None)
    with pytest.raises(PayloadTypeError):
        bus.publish_event(Event.create(ET.TASK_COMPLETED, 1))
    bus.publish(ET.TASK_COMPLETED, Done("ok"))
    assert [e.data for e in bus.history()] == [Done("ok")]
    bus.declare(DONE)  # same declaration twice is fine
    with pytest.raises(ValueError, match="already declared"):
        bus.declare(declare(ET.TASK_COMPLETED, int))
    with pytest.raises(TypeError, match="EventKey"):
        bus.declare(ET.TASK_COMPLETED)  # type: ignore[arg-type]


# ----------------------------------------------------- re-entrancy / causation


def test_handlers_may_reenter_the_bus(bus: EventBus) -> None:
    """Handlers publish, subscribe, unsubscribe and add middleware without deadlock."""
    log: list[str] = []
    late: list[Any] = []
    tokens: list[Any] = []

    def reenter(e: Event[Any]) -> None:
        log.append("reenter")
        tokens.append(bus.subscribe(ET.TASK_STARTED, late.append))
        bus.add_middleware(lambda ev: ev)
        bus.publish(ET.TASK_COMPLETED, "child")
        tokens[0]()  # unsubscribes itself (first token is its own)

    tokens.append(bus.subscribe(ET.TASK_STARTED, reenter))
    bus.subscribe(ET.TASK_COMPLETED, lambda e: log.append(f"completed:{e.data}"))
    bus.publish(ET.TASK_STARTED, 1)
    assert log == ["reenter", "completed:child"]
    assert late == []  # subscribed during dispatch: does not get the in-flight event
    bus.publish(ET.TASK_STARTED, 2)
    assert [e.data for e in late] == [2]
    assert log == ["reenter", "completed:child"]  # reenter unsubscribed itself


def test_causation_parent_id(bus: EventBus) -> None:
    """An event published while handling another records it as parent_id."""
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED))
    parent = bus.publish(ET.TASK_STARTED)
    child = bus.history(ET.TASK_COMPLETED)[0]
    assert child.parent_id == parent
    bus.publish(ET.TASK_COMPLETED)
    assert bus.history(ET.TASK_COMPLETED)[-1].parent_id is None


def test_runaway_recursion_hits_the_depth_limit() -> None:
    """A handler re-publishing forever stops at max_depth with a clear error."""
    b = EventBus(max_depth=10)
    depth: list[int] = []
    failures: list[Event[Any]] = []
    b.subscribe(ET.HANDLER_ERROR, failures.append)

    def again(e: Event[Any]) -> None:
        depth.append(1)
        b.publish(ET.TASK_STARTED)

    tok = b.subscribe(ET.TASK_STARTED, again)
    b.publish(ET.TASK_STARTED)
    assert len(depth) == 10
    (failure,) = failures
    assert isinstance(failure.data.exception, RecursionDepthError)
    assert failure.data.exception.limit == 10
    tok()
    b.publish(ET.TASK_STARTED)  # still usable
    assert b.stats()["published"] == 10 + 1 + 1


def test_correlation_ids(bus: EventBus) -> None:
    """correlation_id= and correlate() tag events; handlers' publishes inherit it."""
    bus.subscribe(ET.TASK_STARTED, lambda e: bus.publish(ET.TASK_COMPLETED))
    bus.publish(ET.TASK_STARTED, correlation_id="run-1")
    with correlate("run-2") as cid:
        assert current_correlation_id() == cid == "run-2"
        bus.publish(ET.TASK_STARTED)
    assert current_correlation_id() is None
    bus.publish(ET.TASK_STARTED)
    assert [e.correlation_id for e in bus.history()] == [
        "run-1",
        "run-1",
        "run-2",
        "run-2",
        None,
        None,
    ]
    assert len(bus.history(correlation_id="run-2")) == 2
    with pytest.raises(ValueError, match="correlation_id"), correlate(""):
        pass


def test_run_history_can_be_disabled() -> None:
    """max_runs=0 (or run_history_limit=0) keeps no runs; correlated publishes still work."""
    for options in ({"max_runs": 0}, {"run_history_limit": 0}):
        b = EventBus(**options)
        b.publish(ET.TASK_STARTED, correlation_id="r")
        assert b.history(correlation_id="r") == []
        assert len(b.history()) == 1
        assert b.stats()["runs_retained"] == 0


def test_run_history_is_bounded_two_ways() -> None:
    """Per-run history keeps run_history_limit events for at most max_runs runs (LRU)."""
    b = EventBus(history_limit=5, run_history_limit=3, max_runs=2)
    for i in range(5):
        b.publish(ET.TASK_STARTED, i, correlation_id="a")
    b.publish(ET.TASK_STARTED, "b0", correlation_id="b")
    b.publish(ET.TASK_STARTED, 5, correlation_id="a")  # touches "a": now most recent
    b.publish(ET.TASK_STARTED, "c0", correlation_id="c")  # evicts "b"
    assert [e.data for e in b.history(correlation_id="a")] == [3, 4, 5]
    assert b.history(correlation_id="b") == []
    assert [e.data for e in b.history(correlation_id="c")] == ["c0"]
    s = b.stats()
    assert s["runs_retained"] == 2
    assert s["runs_evicted"] == 1


# ------------------------------------------------------------ thread safety


def test_concurrent_publish_subscribe_unsubscribe(bus: EventBus) -> None:
    """Threads publishing while others churn subscriptions lose and duplicate nothing."""
    seen: dict[int, list[int]] = {t: [] for t in range(4)}
    lock = threading.Lock()

    def record(e: Event[Any]) -> None:
        t, i = e.data
        with lock:
            seen[t].append(i)

    bus.subscribe(ET.TASK_STARTED, record)
    errors: list[BaseException] = []
    stop = threading.Event()

    def publisher(t: int) -> None:
        try:
            for i in range(2000):
                bus.publish(ET.TASK_STARTED, (t, i))
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    def churn() -> None:
        try:
            while not stop.is_set():
                bus.subscribe(ET.TASK_STARTED, lambda e: None)()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in range(4)]
    churner = threading.Thread(target=churn)
    churner.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    churner.join(30)
    if errors:
        raise errors[0]
    for t in range(4):
        assert seen[t] == list(range(2000))
    seqs = [e.seq for e in bus.history()]
    assert seqs == sorted(seqs)
    assert len(seqs) == 1000


# ------------------------------------------------- enums that compare by value


class Alpha(enum.IntEnum):
    """An IntEnum: its members compare and hash like ints."""

    X = 1


class Beta(enum.IntEnum):
    """Another IntEnum whose member has the same value as Alpha.X."""

    Y = 1


class Lookalike(enum.StrEnum):
    """A user StrEnum whose value equals a core EventType value."""

    STARTED = "task.started"


def test_equal_valued_members_of_different_enums_stay_apart(bus: EventBus) -> None:
    """Routing, counts, declarations and DropTypes go by member identity, not value."""
    got: list[Any] = []
    bus.subscribe(Alpha.X, lambda e: got.append(("alpha", e.data)))
    bus.subscribe(ET.TASK_STARTED, lambda e: got.append(("core", e.data)))
    bus.publish(Beta.Y, 1)
    bus.publish(Lookalike.STARTED, 2)
    assert got == []
    bus.publish(Alpha.X, 3)
    bus.publish(ET.TASK_STARTED, 4)
    assert got == [("alpha", 3), ("core", 4)]
    assert bus.subscriber_count(Beta.Y) == 0
    assert bus.subscriber_count(Alpha.X) == 1
    assert set(bus.stats()["subscribers"]) == {"Alpha.X", "EventType.TASK_STARTED"}
    bus.declare(declare(Alpha.X, int))
    bus.publish(Beta.Y, "not an int: Beta.Y is not declared")
    bus.add_middleware(DropTypes(Alpha.X))
    bus.publish(Beta.Y, 5)
    assert bus.history()[-1].type is Beta.Y
    assert bus.stats()["dropped_by_middleware"] == 0


def test_terminal_types_go_by_identity() -> None:
    """A member equal in value to a terminal type is not terminal itself."""
    b = EventBus(terminal_types=(Alpha.X,))
    assert id(Alpha.X) in b.terminal_ids
    assert id(Beta.Y) not in b.terminal_ids


def test_middleware_returned_event_is_never_mutated(bus: EventBus) -> None:
    """An event a middleware returns (maybe one it keeps) is recorded as a copy."""
    cached = Event.create(ET.TASK_COMPLETED, "cached")
    bus.add_middleware(lambda e: cached)
    bus.publish(ET.TASK_STARTED)
    bus.publish(ET.TASK_STARTED)
    assert cached.seq == -1
    assert [e.seq for e in bus.history()] == [1, 2]
    assert all(e.id == cached.id for e in bus.history())


def test_run_trimmed_upto_names_what_a_run_lost() -> None:
    """run_trimmed_upto: None for a complete run, the newest lost seq for a trimmed one."""
    bus = EventBus(run_history_limit=3)
    with correlate("r"):
        for _ in range(5):
            bus.publish(EventType.TASK_STARTED)
    assert bus.run_trimmed_upto("r") == 2
    assert [e.seq for e in bus.history(correlation_id="r")] == [3, 4, 5]
    assert bus.run_trimmed_upto("other") is None

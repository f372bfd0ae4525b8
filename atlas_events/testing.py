"""Test helpers: record what a bus published, and fail tests on handler failures.

Bound to one bus (no global state), thread-safe::

    from atlas_events.testing import capture_events

    def test_agent_reports(bus):
        with capture_events(bus) as rec:
            run_agent(bus)
        rec.assert_published(EventType.AGENT_STARTED, count=1)
        rec.assert_published(EventType.TASK_COMPLETED, data={"ok": True})

Installing atlas-events also installs its pytest plugin
(:mod:`atlas_events.pytest_plugin`, through the ``pytest11`` entry point):
the fixtures ``atlas_bus``, ``atlas_recorder`` and ``atlas_handler_failures``
need no ``conftest.py`` line. See ``docs/testing.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from ._bus import EventBus
from ._checks import check_int, check_seconds
from ._event import ANY, Event, EventKey, EventType
from ._receivers import check_one_arg_callable
from ._registration import SubscriptionGroup
from ._stats import HandlerFailure
from ._subscription import Subscription

__all__ = [
    "CapturedFailure",
    "EventRecorder",
    "HandlerFailures",
    "HandlerFailuresError",
    "capture_events",
    "watch_handler_failures",
]

# Loading this module as a plugin (the old ``pytest_plugins =
# ["atlas_events.testing"]``) loads the real one, registered once by name.
pytest_plugins = ["atlas_events.pytest_plugin"]

_MISSING: Any = object()


class EventRecorder:
    """Collects the events delivered to it; thread-safe.

    Subscribe it like any handler (or use :func:`capture_events`); wait for
    events from other threads with :meth:`wait_for`, from async code with
    :meth:`wait_for_async`.

    Attributes:
        subscription: The token of the subscription feeding it, if any.
    """

    def __init__(self) -> None:
        self._events: list[Event[Any]] = []
        self._cond = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.subscription: Subscription | None = None

    def __call__(self, event: Event[Any]) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
            waiters = list(self._async_waiters)
        for loop, wake in waiters:
            _wake(loop, wake)

    @property
    def events(self) -> list[Event[Any]]:
        """The recorded events, in delivery order (a copy on each read)."""
        with self._cond:
            return list(self._events)

    @property
    def types(self) -> list[enum.Enum]:
        """The recorded event types, in order."""
        return [e.type for e in self.events]

    def of_type(self, event_type: enum.Enum | EventKey[Any]) -> list[Event[Any]]:
        """The recorded events of ``event_type`` (every event for ``ANY``), in order."""
        et = _member(event_type)
        return [e for e in self.events if et is ANY or e.type is et]

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._cond:
            self._events.clear()

    def __len__(self) -> int:
        with self._cond:
            return len(self._events)

    def assert_published(
        self,
        event_type: enum.Enum | EventKey[Any],
        *,
        data: Any = _MISSING,
        count: int | None = None,
        where: Callable[[Event[Any]], bool] | None = None,
    ) -> list[Event[Any]]:
        """Assert events of ``event_type`` were recorded; return the matches.

        Args:
            event_type: The type (or typed key) to look for.
            data: Only count events whose ``data`` equals this.
            count: Require exactly this many matches (default: at least one).
            where: Only count events for which this returns true.

        Raises:
            AssertionError: With a listing of what was recorded instead.
            TypeError, ValueError: ``count`` is not an int >= 0.
            InvalidHandlerError: ``where`` is not a sync one-argument callable.
        """
        if count is not None:
            check_int("count", count, 0)
        _check_where(where)
        matches = [
            e
            for e in self.of_type(event_type)
            if (data is _MISSING or e.data == data) and (where is None or where(e))
        ]
        ok = len(matches) == count if count is not None else bool(matches)
        if not ok:
            want = f"exactly {count}" if count is not None else "at least one"
            detail = "" if data is _MISSING else f" with data={data!r}"
            raise AssertionError(
                f"expected {want} {event_type!r} event(s){detail}, found {len(matches)}; "
                f"recorded: {self._summary()}"
            )
        return matches

    def assert_not_published(self, event_type: enum.Enum | EventKey[Any]) -> None:
        """Assert no event of ``event_type`` was recorded.

        Raises:
            AssertionError: Listing the events found.
        """
        found = self.of_type(event_type)
        if found:
            raise AssertionError(f"expected no {event_type!r} events, found {len(found)}: {found}")

    def assert_order(self, *event_types: enum.Enum | EventKey[Any]) -> None:
        """Assert these types were recorded in this relative order (others may interleave).

        Raises:
            AssertionError: Naming the first type not found in order.
        """
        types = self.types
        pos = 0
        for t in event_types:
            et = _member(t)
            try:
                pos = next(i for i in range(pos, len(types)) if types[i] is et) + 1
            except StopIteration:
                raise AssertionError(
                    f"{t!r} not found after position {pos}; recorded: {self._summary()}"
                ) from None

    def wait_for(
        self,
        event_type: enum.Enum | EventKey[Any],
        *,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Event[Any]], bool] | None = None,
    ) -> list[Event[Any]]:
        """Block until ``count`` events of ``event_type`` arrived (from other threads).

        Args:
            event_type: The type to wait for (``ANY`` for any event).
            count: How many matching events to wait for (>= 1).
            timeout: Seconds to wait at most (finite, > 0).
            where: Only count events for which this returns true.

        Returns:
            Every matching event recorded so far (at least ``count``).

        Raises:
            TimeoutError: They did not arrive within ``timeout`` seconds.
            TypeError, ValueError: ``count`` or ``timeout`` is invalid.
            InvalidHandlerError: ``where`` is not a sync one-argument callable.
        """
        check_int("count", count, 1)
        check_seconds("timeout", timeout)
        _check_where(where)
        et = _member(event_type)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._matching(et, where)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"waited {timeout}s for {count} {et!r} event(s), got {len(found)}; "
                        f"recorded: {self._summary_locked()}"
                    )
                self._cond.wait(left)

    async def wait_for_async(
        self,
        event_type: enum.Enum | EventKey[Any],
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the same arguments as wait_for
        where: Callable[[Event[Any]], bool] | None = None,
    ) -> list[Event[Any]]:
        """Await ``count`` events of ``event_type`` without blocking the event loop.

        Events may be published from any thread or from tasks on this loop.
        Arguments, result and errors are those of :meth:`wait_for`.
        """
        check_int("count", count, 1)
        check_seconds("timeout", timeout)
        _check_where(where)
        et = _member(event_type)
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        waiter = (loop, wake)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with self._cond:
                        found = self._matching(et, where)
                        if len(found) >= count:
                            return found
                        wake.clear()
                        if waiter not in self._async_waiters:
                            self._async_waiters.append(waiter)
                    await wake.wait()
        except TimeoutError:
            with self._cond:
                got = len(self._matching(et, where))
                summary = self._summary_locked()
            raise TimeoutError(
                f"waited {timeout}s for {count} {et!r} event(s), got {got}; recorded: {summary}"
            ) from None
        finally:
            with self._cond:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)

    def _matching(
        self, et: enum.Enum, where: Callable[[Event[Any]], bool] | None
    ) -> list[Event[Any]]:
        return [
            e for e in self._events if (et is ANY or e.type is et) and (where is None or where(e))
        ]

    def _summary(self) -> str:
        with self._cond:
            return self._summary_locked()

    def _summary_locked(self) -> str:
        return ", ".join(f"{e.type_name}#{e.seq}" for e in self._events) or "nothing"


def _check_where(where: object) -> None:
    if where is not None:
        check_one_arg_callable(where, "where predicate")


def _member(event_type: enum.Enum | EventKey[Any]) -> enum.Enum:
    return event_type.type if isinstance(event_type, EventKey) else event_type


def _wake(loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        wake.set()
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody left to wake
        loop.call_soon_threadsafe(wake.set)


@contextmanager
def capture_events(
    bus: EventBus, event_type: enum.Enum | EventKey[Any] = ANY
) -> Iterator[EventRecorder]:
    """Record every event of ``event_type`` delivered on ``bus`` inside the block."""
    rec = EventRecorder()
    token = bus.subscribe(event_type, rec, weak=False)
    rec.subscription = token
    try:
        yield rec
    finally:
        token()


# ------------------------------------------------------------ handler failures


@attrs.frozen
class CapturedFailure:
    """One handler failure seen by :class:`HandlerFailures`.

    Attributes:
        failure: The ``HANDLER_ERROR`` payload (handler name, exception...).
        traceback: The formatted traceback of the handler's exception, taken
            while it was reported (the bus drops the frames afterwards).
        thread: Name of the thread the failure was reported on.
    """

    failure: HandlerFailure
    traceback: str
    thread: str

    def __str__(self) -> str:
        kind = "async handler" if self.failure.is_async else "handler"
        return (
            f"{kind} {self.failure.handler} failed on {self.failure.event_id} "
            f"(thread {self.thread}):\n{self.traceback}"
        )


class HandlerFailuresError(AssertionError):
    """Handlers failed during a test; the message carries each traceback.

    Attributes:
        failures: What was captured.
    """

    def __init__(self, failures: list[CapturedFailure]) -> None:
        body = "\n".join(str(f) for f in failures)
        super().__init__(f"{len(failures)} handler failure(s) during the test:\n{body}")
        self.failures = failures


class _FailureTap:
    """Middleware that sees each ``HANDLER_ERROR`` report before later middleware can drop it."""

    __slots__ = ("_record",)

    # Also run where a report is published in a scope below (inherited
    # middleware runs first there), before that scope's own middleware.
    inherit = True

    def __init__(self, record: Callable[[Event[Any]], None]) -> None:
        self._record = record

    def __call__(self, event: Event[Any]) -> Event[Any]:
        if event.type is EventType.HANDLER_ERROR:
            self._record(event)
        return event


def _consume(_event: Event[Any]) -> None:
    """The watch's ``HANDLER_ERROR`` subscriber: the tap recorded the report already."""


class HandlerFailures:
    """Collects every handler failure reported on a bus and its scopes.

    Watches ``HANDLER_ERROR`` reports from a middleware added when it is
    created, so it sees failures wherever they happen -- sync handlers on
    any thread, async handlers on their loops, child scopes (which forward
    their reports) -- even where middleware added later drops the reports.
    It also subscribes to ``HANDLER_ERROR``: the reports are consumed, so the
    bus does not log them as unhandled. The bus must report failures
    (``raise_handler_errors=False``, the default).

    Call :meth:`check` to raise them, :meth:`take` to claim the ones a test
    expected.
    """

    def __init__(self, bus: EventBus) -> None:
        self._lock = threading.Lock()
        self._failures: list[CapturedFailure] = []
        tap = bus.add_middleware(_FailureTap(self._record))
        try:
            listen = bus.subscribe(EventType.HANDLER_ERROR, _consume, weak=False)
        except BaseException:
            tap()
            raise
        self.subscription = Subscription(SubscriptionGroup([tap, listen]), "handler failure watch")

    def _record(self, event: Event[Any]) -> None:
        failure = event.data
        if not isinstance(failure, HandlerFailure):  # someone published HANDLER_ERROR by hand
            return
        text = "".join(traceback.format_exception(failure.exception))
        captured = CapturedFailure(failure, text, threading.current_thread().name)
        with self._lock:
            self._failures.append(captured)

    @property
    def failures(self) -> list[CapturedFailure]:
        """The failures captured and not yet taken (a copy)."""
        with self._lock:
            return list(self._failures)

    def take(self) -> list[CapturedFailure]:
        """Return the captured failures and forget them (the test expected them)."""
        with self._lock:
            taken, self._failures = self._failures, []
        return taken

    def check(self) -> None:
        """Raise the captured failures, if any (each is raised once).

        Raises:
            HandlerFailuresError: With every failure's traceback.
        """
        taken = self.take()
        if taken:
            raise HandlerFailuresError(taken)

    def close(self) -> None:
        """Stop collecting."""
        self.subscription()

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)


@contextmanager
def watch_handler_failures(bus: EventBus) -> Iterator[HandlerFailures]:
    """Collect handler failures on ``bus`` inside the block; raise them at its end.

    Raises:
        HandlerFailuresError: Leaving the block with failures not taken
            (unless the block itself raised).
    """
    watch = HandlerFailures(bus)
    try:
        yield watch
    finally:
        watch.close()
    watch.check()

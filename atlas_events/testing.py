"""Test helpers: record what a bus published and assert on it.

Bound to one bus (no global state), thread-safe::

    from atlas_events.testing import capture_events

    def test_agent_reports(bus):
        with capture_events(bus) as rec:
            run_agent(bus)
        rec.assert_published(EventType.AGENT_STARTED, count=1)
        rec.assert_published(EventType.TASK_COMPLETED, data={"ok": True})

As a pytest plugin (``pytest_plugins = ["atlas_events.testing"]`` in your
``conftest.py``) it provides the fixtures ``event_bus`` (a fresh bus that
raises handler errors, closed after the test) and ``event_recorder``
(recording everything published on ``event_bus``).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._bus import EventBus
from ._event import ANY, Event, EventKey
from ._subscription import Subscription

__all__ = ["EventRecorder", "capture_events", "event_bus", "event_recorder"]

_MISSING: Any = object()


class EventRecorder:
    """Collects the events delivered to it; thread-safe.

    Attributes:
        events: The recorded events, in delivery order (a copy on each read).
    """

    def __init__(self) -> None:
        self._events: list[Event[Any]] = []
        self._cond = threading.Condition()
        self.subscription: Subscription | None = None

    def __call__(self, event: Event[Any]) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    @property
    def events(self) -> list[Event[Any]]:
        with self._cond:
            return list(self._events)

    @property
    def types(self) -> list[enum.Enum]:
        """The recorded event types, in order."""
        return [e.type for e in self.events]

    def of_type(self, event_type: enum.Enum | EventKey[Any]) -> list[Event[Any]]:
        et = event_type.type if isinstance(event_type, EventKey) else event_type
        return [e for e in self.events if e.type is et]

    def clear(self) -> None:
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
            data: Only count events whose ``data`` equals this.
            count: Require exactly this many matches (default: at least one).
            where: Only count events for which this returns true.

        Raises:
            AssertionError: With a listing of what was recorded instead.
        """
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
        """Assert no event of ``event_type`` was recorded."""
        found = self.of_type(event_type)
        if found:
            raise AssertionError(f"expected no {event_type!r} events, found {len(found)}: {found}")

    def assert_order(self, *event_types: enum.Enum) -> None:
        """Assert these types were recorded in this relative order."""
        types = self.types
        pos = 0
        for t in event_types:
            try:
                pos = types.index(t, pos) + 1
            except ValueError:
                raise AssertionError(
                    f"{t!r} not found after position {pos}; recorded: {self._summary()}"
                ) from None

    def wait_for(
        self, event_type: enum.Enum | EventKey[Any], *, count: int = 1, timeout: float = 5.0
    ) -> list[Event[Any]]:
        """Block until ``count`` events of ``event_type`` arrived (other threads).

        Raises:
            TimeoutError: They did not arrive within ``timeout`` seconds.
        """
        et = event_type.type if isinstance(event_type, EventKey) else event_type
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self._events if e.type is et]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"waited {timeout}s for {count} {et!r} event(s), got {len(found)}"
                    )
                self._cond.wait(left)

    def _summary(self) -> str:
        return ", ".join(f"{e.type_name}#{e.seq}" for e in self.events) or "nothing"


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


try:  # the pytest fixtures, when pytest is available
    import pytest
except ImportError:  # pragma: no cover
    pass
else:

    @pytest.fixture
    def event_bus() -> Iterator[EventBus]:
        """A fresh bus that raises handler errors; closed after the test."""
        bus = EventBus(raise_handler_errors=True, name="test")
        try:
            yield bus
        finally:
            bus.close()

    @pytest.fixture
    def event_recorder(event_bus: EventBus) -> Iterator[EventRecorder]:
        """Records everything published on ``event_bus``."""
        with capture_events(event_bus) as rec:
            yield rec

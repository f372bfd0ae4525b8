"""Waiting for one event: ``bus.wait_for`` (async) and ``bus.wait_for_sync`` (threads)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ._checks import check_seconds
from ._event import Event, EventKey
from ._receivers import check_one_arg_callable
from .exceptions import BusClosedError

if TYPE_CHECKING:
    from ._buslike import BusLike
    from ._subscription import Subscription

__all__ = ["Waits", "wait_for", "wait_for_sync"]


class Waits:
    """The waits in progress on one bus; :meth:`end_all` ends them when it closes.

    Held weakly: a wait nobody awaits any more leaves no trace here.
    """

    __slots__ = ("_closed", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: weakref.WeakSet[_Waiter] = weakref.WeakSet()
        self._closed = False

    def add(self, waiter: _Waiter) -> bool:
        """Track ``waiter``; ``False`` if the bus has already closed."""
        with self._lock:
            if not self._closed:
                self._waiters.add(waiter)
            return not self._closed

    def discard(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def end_all(self, bus_name: str) -> None:
        """End every pending wait with :class:`BusClosedError` (the bus closed)."""
        with self._lock:
            self._closed = True
            waiters = list(self._waiters)
            self._waiters.clear()
        for waiter in waiters:
            waiter.settle(None, BusClosedError(bus_name, "wait for an event"))


class _Waiter:
    """A one-shot slot the bus fills with the first matching event, from any thread.

    Subscribed weakly (through its bound method), so a waiter nobody awaits
    any more -- an abandoned coroutine -- takes its subscription with it.
    """

    __slots__ = ("__weakref__", "_done", "_lock", "_loop", "_waker", "error", "event", "where")

    def __init__(self, where: Callable[[Event[Any]], bool] | None) -> None:
        self.where = where
        self.event: Event[Any] | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waker: asyncio.Future[None] | None = None

    def deliver(self, event: Event[Any]) -> None:
        """The handler: claim the slot with ``event`` if it matches."""
        if self._done.is_set():
            return
        where = self.where
        if where is not None:
            try:
                if not where(event):
                    return
            except Exception as exc:  # the waiter raises it, the publisher does not
                self.settle(None, exc)
                return
        self.settle(event, None)

    def settle(self, event: Event[Any] | None, error: BaseException | None) -> None:
        """Fill the slot with ``event`` or ``error`` (first call wins) and wake the waiter."""
        with self._lock:
            if self._done.is_set():
                return
            if error is None:
                self.event = event
            else:
                self.error = error
            self._done.set()
            loop, waker = self._loop, self._waker
        if loop is not None and waker is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_wake, waker)

    def result(self) -> Event[Any]:
        if self.error is not None:
            raise self.error
        event = self.event
        if event is None:  # pragma: no cover - only called once done
            raise RuntimeError("no event yet")
        return event

    def wait_sync(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    async def wait_async(self, deadline: float | None) -> bool:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._done.is_set():
                return True
            self._loop = loop
            waker = self._waker = loop.create_future()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                await waker
        except TimeoutError:
            return self._done.is_set()
        return True


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


def _start(
    bus: BusLike,
    waits: Waits,
    event_type: enum.Enum | EventKey[Any],
    where: Callable[[Event[Any]], bool] | None,
    timeout: object,
) -> tuple[_Waiter, Subscription, float | None]:
    seconds = check_seconds("timeout", timeout, allow_none=True)
    if where is not None:
        check_one_arg_callable(where, "where predicate")
    waiter = _Waiter(where)
    sub = bus.subscribe(event_type, waiter.deliver)  # weak: a bound method
    if not waits.add(waiter):  # the bus closed since subscribe() checked
        sub()
        raise BusClosedError(bus.name, "wait for an event")
    deadline = None if seconds is None else time.monotonic() + seconds
    return waiter, sub, deadline


def _timed_out(event_type: object, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"no matching {event_type!r} event within {timeout} s")


def wait_for(
    bus: BusLike,
    waits: Waits,
    event_type: enum.Enum | EventKey[Any],
    *,
    where: Callable[[Event[Any]], bool] | None = None,
    timeout: float | None = None,
) -> Coroutine[Any, Any, Event[Any]]:
    """Subscribe now; return a coroutine resolving to the first matching event.

    See :meth:`EventBus.wait_for`. The subscription is made by this call (not
    when the coroutine first runs), so an event published between the call
    and the ``await`` is not missed.
    """
    waiter, sub, deadline = _start(bus, waits, event_type, where, timeout)
    coro = _await(waiter, waits, sub, deadline, _timed_out(event_type, timeout))
    coro.__qualname__ = "EventBus.wait_for"  # type: ignore[attr-defined]  # warnings name it
    return _Wait(coro, sub)


class _Wait(Coroutine[Any, Any, "Event[Any]"]):
    """The coroutine :func:`wait_for` returns; unsubscribes even if its body never runs.

    A task cancelled before its first step throws into a coroutine that
    never started, so the body's ``finally`` does not run: this wrapper
    ends the subscription then (and on ``close()``) itself.
    """

    __slots__ = ("_coro", "_sub")

    def __init__(self, coro: Coroutine[Any, Any, Event[Any]], sub: Subscription) -> None:
        self._coro = coro
        self._sub = sub

    def _not_started(self) -> bool:
        return inspect.getcoroutinestate(self._coro) == inspect.CORO_CREATED

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if self._not_started():
            self._sub()
        if val is None and tb is None:  # the one-argument form (3.12 deprecates the others)
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        if self._not_started():
            self._sub()
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Event[Any]]:
        return self._coro.__await__()

    # What asyncio's task repr and debuggers read from a native coroutine.
    @property
    def __name__(self) -> str:
        return "EventBus.wait_for"

    @property
    def cr_frame(self) -> Any:
        return getattr(self._coro, "cr_frame", None)

    @property
    def cr_code(self) -> Any:
        return getattr(self._coro, "cr_code", None)

    @property
    def cr_running(self) -> bool:
        return bool(getattr(self._coro, "cr_running", False))

    @property
    def cr_await(self) -> Any:
        return getattr(self._coro, "cr_await", None)


async def _await(
    waiter: _Waiter,
    waits: Waits,
    sub: Subscription,
    deadline: float | None,
    timeout_error: TimeoutError,
) -> Event[Any]:
    try:
        if not await waiter.wait_async(deadline):
            raise timeout_error
        return waiter.result()
    finally:
        sub()
        waits.discard(waiter)


def wait_for_sync(
    bus: BusLike,
    waits: Waits,
    event_type: enum.Enum | EventKey[Any],
    *,
    where: Callable[[Event[Any]], bool] | None = None,
    timeout: float | None = None,
) -> Event[Any]:
    """Block this thread until the first matching event; see :meth:`EventBus.wait_for_sync`."""
    waiter, sub, _ = _start(bus, waits, event_type, where, timeout)
    try:
        if not waiter.wait_sync(None if timeout is None else float(timeout)):
            raise _timed_out(event_type, timeout)
        return waiter.result()
    finally:
        sub()
        waits.discard(waiter)

"""The facade's ``subscribe``: checks, handler policies and wrappers, then the registry."""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._checks import check_bool, check_event_type
from ._event import Event, EventKey
from ._receivers import Receiver
from ._subscription import Subscription
from .exceptions import BusClosedError

if TYPE_CHECKING:
    from ._policies import HandlerPolicy
    from ._registry import Registry
    from ._wrappers import HandlerWrapper

__all__ = ["Subscriptions"]

T = TypeVar("T")


class Subscriptions:
    """Part of :class:`EventBus`: subscribing handlers."""

    name: str
    _closed: bool
    _registry: Registry
    _handler_wrappers: tuple[HandlerWrapper, ...]
    # Provided by EventBus and its other parts:
    _must_defer: Callable[[], bool]
    _defer: Callable[[Callable[[], object]], None]
    _wrap_handler: Callable[
        ...,
        tuple[Callable[[Event[Any]], Any], bool, HandlerPolicy | None],
    ]

    # ------------------------------------------------------------ subscribe

    @overload
    def subscribe(
        self,
        event_type: EventKey[T],
        handler: Callable[[Event[T]], Any],
        *,
        weak: bool | None = None,
        filter: Callable[[Event[T]], bool] | None = None,
        once: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float | None = None,
        slow_threshold: float | None = None,
        max_failures: int | None = None,
    ) -> Subscription: ...

    @overload
    def subscribe(
        self,
        event_type: enum.Enum,
        handler: Callable[[Event[Any]], Any],
        *,
        weak: bool | None = None,
        filter: Callable[[Event[Any]], bool] | None = None,
        once: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float | None = None,
        slow_threshold: float | None = None,
        max_failures: int | None = None,
    ) -> Subscription: ...

    def subscribe(
        self,
        event_type: enum.Enum | EventKey[Any],
        handler: Callable[[Event[Any]], Any],
        *,
        weak: bool | None = None,
        filter: Callable[[Event[Any]], bool] | None = None,
        once: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float | None = None,
        slow_threshold: float | None = None,
        max_failures: int | None = None,
    ) -> Subscription:
        """Call ``handler(event)`` for each event of ``event_type``.

        Args:
            event_type: An enum member, an :class:`EventKey`, or :data:`ANY`
                for every event.
            handler: A callable taking the event; a coroutine function runs
                on its event loop (see ``loop``), and so does an awaitable
                that a sync handler returns.
            weak: Hold the handler weakly. Default: bound methods (and
                partials binding a method to its instance) are weak (the
                subscription ends when the component is collected);
                functions, lambdas and closures are strong.
            filter: Only deliver events for which ``filter(event)`` is true.
                A method of the weakly held component is held weakly too.
            once: Unsubscribe after the first delivery.
            loop: The event loop async work of this handler runs on.
                Default: the loop running at subscribe time, or -- when
                subscribed before any loop runs -- the loop running where
                the handler is first dispatched.
            timeout: Seconds an async handler may run per event before it is
                cancelled and reported (``HANDLER_ERROR`` carrying a
                :class:`HandlerTimeoutError`). Async handlers only.
            slow_threshold: Seconds after which a call is logged as slow and
                counted in ``stats()["slow_handlers"]``.
            max_failures: Unsubscribe after this many consecutive failures
                (logged, counted in ``stats()["handlers_removed"]``,
                announced as ``HANDLER_REMOVED``).

        Returns:
            A :class:`Subscription`; call it to unsubscribe.

        Handlers run in subscription order; ``ANY`` handlers interleave with
        type-specific ones by the order they were subscribed in. A handler
        subscribed while an event is being dispatched does not receive that
        event. Called by code the garbage collector runs while this thread
        holds a lock of this bus (a finalizer), the subscription takes effect
        as soon as the thread leaves that locked section.

        Raises:
            InvalidEventTypeError: ``event_type`` is not an enum member.
            InvalidHandlerError: ``handler`` or ``filter`` is not a one-argument
                callable.
            TypeError: ``loop`` is not an event loop.
            ValueError: A policy limit is out of range (seconds: finite,
                ``> 0`` and ``<= threading.TIMEOUT_MAX``; ``max_failures``: an
                int ``>= 1``), or ``timeout`` was given for a synchronous handler.
            BusClosedError: The bus is closed.
        """
        et = check_event_type(event_type, allow_any=True)
        check_bool("once", once)
        check_bool("weak", weak, allow_none=True)
        if self._closed:
            raise BusClosedError(self.name, "subscribe")
        policy = None
        if (
            self._handler_wrappers
            or timeout is not None
            or slow_threshold is not None
            or max_failures is not None
        ):
            handler, weak, policy = self._wrap_handler(
                et, handler, weak, timeout, slow_threshold, max_failures
            )
        registry = self._registry
        rec = Receiver(
            registry,
            et,
            handler,
            weak=weak,
            filter=filter,
            once=once,
            order=next(registry.order),
            loop=loop,
        )
        if self._must_defer():
            self._defer(functools.partial(registry.add, rec, self._closed_now))
        elif not registry.add(rec, self._closed_now):
            raise BusClosedError(self.name, "subscribe")
        sub = Subscription(rec, rec.describe())
        if policy is not None:
            policy.bind(sub)
        return sub

    def _closed_now(self) -> bool:
        return self._closed

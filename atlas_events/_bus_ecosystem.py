"""The facade's ecosystem methods: ``wait_for``, ``@bus.on``, components, handler policies.

Thin forwards: the logic lives in ``_waiting``, ``_registration``,
``_policies`` and ``_wrappers``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from . import _registration, _waiting
from ._event import Event, EventKey
from ._policies import HandlerPolicy, PolicyCounters, wrap_subscription
from ._receivers import callable_name
from ._recorder import Registration
from ._subscription import Subscription
from .exceptions import BusClosedError

if TYPE_CHECKING:
    from ._buslike import BusLike
    from ._locks import RegistryLock
    from ._registration import KeyDecorator
    from ._waiting import Waits
    from ._wrappers import HandlerWrapper

__all__ = ["Ecosystem"]

T = TypeVar("T")
_F = TypeVar("_F", bound=Callable[..., Any])


class Ecosystem:
    """Part of :class:`EventBus`: waiting, decorators, components, handler policies.

    The forwarded-to functions take the bus as a ``BusLike``;
    ``cast("BusLike", self)`` passes this part's ``EventBus`` (which satisfies
    the protocol) without a (type-only) import of ``_bus`` back here.
    """

    name: str
    _closed: bool
    _waits: Waits
    _wlock: RegistryLock
    _handler_wrappers: tuple[HandlerWrapper, ...]
    _policy_counters: PolicyCounters

    # ------------------------------------------------ ecosystem (thin facade)
    # The logic lives in _waiting, _registration and _policies; these methods
    # only forward to it.

    @overload
    def wait_for(
        self,
        event_type: EventKey[T],
        *,
        where: Callable[[Event[T]], bool] | None = None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, Event[T]]: ...

    @overload
    def wait_for(
        self,
        event_type: enum.Enum,
        *,
        where: Callable[[Event[Any]], bool] | None = None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, Event[Any]]: ...

    def wait_for(
        self,
        event_type: enum.Enum | EventKey[Any],
        *,
        where: Callable[[Event[Any]], bool] | None = None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, Event[Any]]:
        """``await bus.wait_for(t)``: the first event of type ``t`` published after this call.

        The subscription is made by the call itself, before it returns the
        coroutine to await, so nothing published from then on can be
        missed, from any thread. It is removed when the wait ends: on the
        event, on timeout, on cancellation, or when an abandoned coroutine
        is garbage-collected.

        Args:
            event_type: An enum member, an :class:`EventKey` or ``ANY``.
            where: Only an event for which ``where(event)`` is true counts;
                if it raises, the wait ends with that exception.
            timeout: Seconds to wait (counted from this call); ``None``
                waits until the event comes.

        Returns:
            A coroutine resolving to the matching :class:`Event`.

        Raises:
            TimeoutError: (when awaited) No matching event within ``timeout``.
            BusClosedError: (when awaited) The bus (or an ancestor) closed
                during the wait; raised by the call if it is closed already.
            InvalidEventTypeError, InvalidHandlerError, InvalidOptionError:
                Bad arguments (raised by the call).
        """
        return _waiting.wait_for(
            cast("BusLike", self), self._waits, event_type, where=where, timeout=timeout
        )

    @overload
    def wait_for_sync(
        self,
        event_type: EventKey[T],
        *,
        where: Callable[[Event[T]], bool] | None = None,
        timeout: float | None = None,
    ) -> Event[T]: ...

    @overload
    def wait_for_sync(
        self,
        event_type: enum.Enum,
        *,
        where: Callable[[Event[Any]], bool] | None = None,
        timeout: float | None = None,
    ) -> Event[Any]: ...

    def wait_for_sync(
        self,
        event_type: enum.Enum | EventKey[Any],
        *,
        where: Callable[[Event[Any]], bool] | None = None,
        timeout: float | None = None,
    ) -> Event[Any]:
        """Block this thread until the first matching event; :meth:`wait_for` for threads.

        Never call it from a handler of this bus on the publishing thread,
        nor on a running event loop: the event could not be published (or
        the loop would stall) while it blocks.

        Raises:
            TimeoutError: No matching event within ``timeout`` seconds.
            BusClosedError: The bus (or an ancestor) is closed, or closed
                during the wait.
        """
        return _waiting.wait_for_sync(
            cast("BusLike", self), self._waits, event_type, where=where, timeout=timeout
        )

    @overload
    def on(self, event_type: EventKey[T], **subscribe_options: Any) -> KeyDecorator[T]: ...

    @overload
    def on(self, event_type: enum.Enum, **subscribe_options: Any) -> Callable[[_F], _F]: ...

    def on(
        self, event_type: enum.Enum | EventKey[Any], **subscribe_options: Any
    ) -> Callable[[_F], _F] | KeyDecorator[Any]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged.

        Unsubscribe later with ``bus.off(event_type, function)``.
        ``subscribe_options`` are those of :meth:`subscribe` (``filter=``,
        ``once=``, ``timeout=``...), checked when the decorator is applied.
        """
        return _registration.on(cast("BusLike", self), event_type, subscribe_options)

    def off(self, event_type: enum.Enum | EventKey[Any], handler: Callable[..., Any]) -> int:
        """Unsubscribe every subscription of ``handler`` to ``event_type``; return how many."""
        return _registration.off(cast("BusLike", self), event_type, handler)

    def subscribe_component(self, component: object) -> Subscription:
        """Subscribe every method of ``component`` marked with :func:`handles`; one token.

        See :func:`atlas_events.handles`.
        """
        return _registration.subscribe_component(cast("BusLike", self), component)

    def _wrap_handler(
        self,
        event_type: enum.Enum,
        handler: Callable[[Event[Any]], Any],
        weak: bool | None,
        timeout: float | None,
        slow_threshold: float | None,
        max_failures: int | None,
    ) -> tuple[Callable[[Event[Any]], Any], bool, HandlerPolicy | None]:
        policy = HandlerPolicy(timeout, slow_threshold, max_failures, self._policy_counters)
        return wrap_subscription(
            cast("BusLike", self), event_type, handler, weak, policy, self._handler_wrappers
        )

    def _add_handler_wrapper(
        self, wrapper: HandlerWrapper
    ) -> tuple[HandlerWrapper, Subscription | None]:
        """Wrap every handler subscribed from now on (package-internal: instrumentation).

        At most one wrapper of a class is active: while one is, ``wrapper``
        is not added. Returns the active wrapper of that class and, if it is
        ``wrapper``, the token that removes it (else ``None``).
        """
        rec = Registration(wrapper, self._remove_handler_wrapper)
        with self._wlock:
            if self._closed:
                raise BusClosedError(self.name, "instrument")
            for active in self._handler_wrappers:
                if type(active) is type(wrapper):
                    return active, None
            self._handler_wrappers = (*self._handler_wrappers, wrapper)
        return wrapper, Subscription(rec, f"handler wrapper {callable_name(wrapper)}")

    def _remove_handler_wrapper(self, rec: Registration) -> bool:
        if not rec.active:
            return False
        rec.active = False
        # One tuple assignment, atomic: safe from a finalizer inside a locked section.
        self._handler_wrappers = tuple(w for w in self._handler_wrappers if w is not rec.item)
        return True

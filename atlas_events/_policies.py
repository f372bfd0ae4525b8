"""Handler policies: async timeouts, slow-handler warnings, removal after repeated failures.

Chosen per subscription (``subscribe(..., timeout=, slow_threshold=,
max_failures=)``) and built once, at subscribe time, as wrappers around the
handler (see :mod:`._wrappers`); subscriptions without a policy pay nothing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._checks import check_seconds
from ._event import EventType
from ._logging import log_extra
from ._receivers import check_one_arg_callable
from ._wrappers import HandlerWrapper, wrap_handler
from .exceptions import BusClosedError, HandlerTimeoutError

if TYPE_CHECKING:
    from ._buslike import BusLike
    from ._event import Event
    from ._subscription import Subscription
    from ._wrappers import Call, HandlerInfo

__all__ = ["HandlerPolicy", "HandlerRemoved", "PolicyCounters", "wrap_subscription"]

log = logging.getLogger("atlas_events")
_perf = time.perf_counter


def _positive_seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_seconds(attribute.name, value, allow_none=True)


def _failure_limit(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1 or None, got {value!r}")


@attrs.frozen
class HandlerRemoved:
    """Payload of ``EventType.HANDLER_REMOVED``: a subscriber failed too often in a row.

    Attributes:
        handler: Qualified name of the removed handler.
        event_type: The type it was subscribed to.
        failures: Consecutive failures that triggered the removal.
        last_error: The exception of the last failure.
    """

    handler: str
    event_type: enum.Enum
    failures: int
    last_error: BaseException


class PolicyCounters:
    """The per-bus counters that policies feed into ``stats()``; thread-safe."""

    __slots__ = ("_lock", "removed", "slow", "timeouts")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.slow = 0
        self.timeouts = 0
        self.removed = 0

    def add(self, *, slow: int = 0, timeouts: int = 0, removed: int = 0) -> None:
        with self._lock:
            self.slow += slow
            self.timeouts += timeouts
            self.removed += removed


@attrs.frozen
class HandlerPolicy:
    """Per-subscription limits, applied by wrapping the handler once.

    Args:
        timeout: Seconds an async handler may run per event; then it is
            cancelled and a ``HANDLER_ERROR`` reports a
            :class:`~atlas_events.exceptions.HandlerTimeoutError`. Async
            handlers only.
        slow_threshold: Seconds after which a handler call (sync, or an
            async handler's whole run) is logged as slow (a warning) and
            counted in ``stats()["slow_handlers"]``.
        max_failures: Unsubscribe the handler after this many consecutive
            failures (a timeout counts); the removal is logged, counted in
            ``stats()["handlers_removed"]`` and announced as a
            ``HANDLER_REMOVED`` event (payload :class:`HandlerRemoved`).
        counters: Where to count (the bus's counters).

    Raises:
        TypeError: A time limit is not a number (a bool is not one).
        ValueError: A time limit is not a finite number of seconds > 0 (and
            at most ``threading.TIMEOUT_MAX``), or ``max_failures`` is not
            an int >= 1.
    """

    timeout: float | None = attrs.field(default=None, validator=_positive_seconds)
    slow_threshold: float | None = attrs.field(default=None, validator=_positive_seconds)
    max_failures: int | None = attrs.field(default=None, validator=_failure_limit)
    counters: PolicyCounters = attrs.field(factory=PolicyCounters, eq=False)
    _subscription: list[Subscription] = attrs.field(factory=list, init=False, eq=False)

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return not (
            self.timeout is None and self.slow_threshold is None and self.max_failures is None
        )

    def bind(self, subscription: Subscription) -> None:
        """Tell the policy which subscription to end after ``max_failures``."""
        self._subscription.append(subscription)

    def __call__(self, call: Call, info: HandlerInfo) -> Call:
        """Wrap ``call`` (a :class:`~atlas_events._wrappers.HandlerWrapper`)."""
        if self.timeout is not None:
            if not info.is_async:
                raise ValueError(
                    f"timeout= bounds coroutine handlers, and {info.name} is synchronous "
                    "(slow_threshold= flags slow sync handlers)"
                )
            call = self._with_timeout(call, info, self.timeout)
        if self.slow_threshold is not None:
            call = self._with_slow_warning(call, info, self.slow_threshold)
        if self.max_failures is not None:
            call = self._with_failure_limit(call, info, self.max_failures)
        return call

    def _with_timeout(self, call: Call, info: HandlerInfo, timeout: float) -> Call:
        counters = self.counters

        async def timed(target: Any, event: Event[Any]) -> Any:
            cm = asyncio.timeout(timeout)
            try:
                async with cm:
                    return await call(target, event)
            except TimeoutError:
                if not cm.expired():
                    raise  # the handler's own TimeoutError
                counters.add(timeouts=1)
                raise HandlerTimeoutError(info.name, timeout, event.id) from None

        return timed

    def _with_slow_warning(self, call: Call, info: HandlerInfo, threshold: float) -> Call:
        counters = self.counters

        def report(event: Event[Any], elapsed: float) -> None:
            counters.add(slow=1)
            log.warning(
                "slow handler %s took %.3f s on %s %s (threshold %s s)",
                info.name,
                elapsed,
                event.type_name,
                event.id,
                threshold,
                extra=log_extra(event, handler=info.name, bus=info.bus.name),
            )

        if info.is_async:

            async def measured_async(target: Any, event: Event[Any]) -> Any:
                start = _perf()
                try:
                    return await call(target, event)
                finally:
                    if (elapsed := _perf() - start) > threshold:
                        report(event, elapsed)

            return measured_async

        def measured(target: Any, event: Event[Any]) -> Any:
            start = _perf()
            try:
                return call(target, event)
            finally:
                if (elapsed := _perf() - start) > threshold:
                    report(event, elapsed)

        return measured

    def _with_failure_limit(self, call: Call, info: HandlerInfo, limit: int) -> Call:
        lock = threading.Lock()
        streak = [0]

        def failed(event: Event[Any], exc: Exception) -> None:
            with lock:
                streak[0] += 1
                failures = streak[0]
            # >=, not ==: a limit reached before bind() removes at the next
            # failure; _remove acts only once (the token's first call).
            if failures >= limit:
                self._remove(info, event, failures, exc)

        def succeeded() -> None:
            with lock:
                streak[0] = 0

        if info.is_async:

            async def counted_async(target: Any, event: Event[Any]) -> Any:
                try:
                    result = await call(target, event)
                except Exception as exc:
                    failed(event, exc)
                    raise
                succeeded()
                return result

            return counted_async

        def counted(target: Any, event: Event[Any]) -> Any:
            try:
                result = call(target, event)
            except Exception as exc:
                failed(event, exc)
                raise
            succeeded()
            return result

        return counted

    def _remove(self, info: HandlerInfo, event: Event[Any], failures: int, exc: Exception) -> None:
        if not self._subscription or not self._subscription[0]():
            return  # already unsubscribed (by the user, or by a concurrent failure)
        self.counters.add(removed=1)
        log.warning(
            "handler %s removed after %d consecutive failures (last: %s: %s)",
            info.name,
            failures,
            type(exc).__name__,
            exc,
            extra=log_extra(event, handler=info.name, bus=info.bus.name),
        )
        bus = info.bus
        try:
            bus.publish(
                EventType.HANDLER_REMOVED,
                HandlerRemoved(info.name, info.event_type, failures, exc),
                source="atlas_events",
            )
        except BusClosedError:
            pass
        except Exception:  # a middleware refused the announcement: the removal stands
            log.exception(
                "could not announce the removal of handler %s",
                info.name,
                extra=log_extra(event, handler=info.name, bus=bus.name),
            )


def wrap_subscription(
    bus: BusLike,
    event_type: enum.Enum,
    handler: Callable[[Event[Any]], Any],
    weak: bool | None,
    policy: HandlerPolicy,
    wrappers: Sequence[HandlerWrapper],
) -> tuple[Callable[[Event[Any]], Any], bool, HandlerPolicy | None]:
    """What ``subscribe`` registers instead of ``handler``: ``(handler, weak, policy)``.

    The policy's wrappers go innermost (so a timeout is a failure that
    instrumentation sees), then the bus's ``wrappers`` in the order added.
    ``policy`` is returned when it is active; bind it to the subscription.

    Raises:
        InvalidHandlerError: ``handler`` is not a one-argument callable.
        ValueError: ``timeout`` was given for a synchronous handler.
    """
    check_one_arg_callable(handler, "handler")
    active = policy.active
    chain: list[HandlerWrapper] = [policy] if active else []
    wrapped = wrap_handler(bus, event_type, handler, weak, [*chain, *wrappers])
    return wrapped.handler, wrapped.weak, policy if active else None

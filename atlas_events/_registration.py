"""Declarative registration: ``@bus.on``, ``bus.off``, ``@handles`` and whole components."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._event import Event, EventKey
from ._holding import method_parts
from ._subscription import Subscription
from ._wrappers import original_handler
from .exceptions import InvalidEventTypeError

if TYPE_CHECKING:
    from ._buslike import BusLike

__all__ = ["KeyDecorator", "SubscriptionGroup", "handles", "off", "on", "subscribe_component"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R")


class KeyDecorator(Protocol[T]):
    """What ``bus.on(key)`` returns for a typed key: it checks the handler's event type.

    mypy keeps the decorated function's name and signature, so a later
    misuse still names it.
    """

    def __call__(self, fn: Callable[[Event[T]], R], /) -> Callable[[Event[T]], R]: ...


_MARK = "__atlas_events_handles__"


def _check_type(event_type: object) -> None:
    if not isinstance(event_type, EventKey | enum.Enum):
        raise InvalidEventTypeError(event_type, allow_any=True)


def _check_options(bus: BusLike, event_type: object, options: dict[str, Any]) -> None:
    """Refuse an unknown ``subscribe`` option now, not when the decorator runs."""
    try:
        inspect.signature(bus.subscribe).bind(event_type, print, **options)
    except TypeError as exc:
        raise TypeError(f"not an option of subscribe(): {exc}") from None


def on(bus: BusLike, event_type: Any, options: dict[str, Any]) -> Callable[[F], F]:
    """The decorator behind :meth:`EventBus.on`."""
    _check_type(event_type)
    _check_options(bus, event_type, options)

    def decorator(fn: F) -> F:
        bus.subscribe(event_type, fn, **options)
        return fn

    return decorator


def _same_handler(subscribed: object, handler: object) -> bool:
    """Whether ``subscribed`` (rebuilt by the bus) is ``handler``.

    A partial binding a method is rebuilt from its parts (the bus holds its
    owner weakly), so it is compared by its parts: owner, function, arguments.
    """
    if subscribed == handler:
        return True
    ours, theirs = method_parts(subscribed), method_parts(handler)
    return (
        ours is not None
        and theirs is not None
        and ours.owner is theirs.owner
        and ours.func == theirs.func
        and ours.args == theirs.args
        and ours.keywords == theirs.keywords
    )


def off(bus: BusLike, event_type: Any, handler: Callable[..., Any]) -> int:
    """Unsubscribe ``handler`` from ``event_type`` on ``bus``; return how many ended."""
    removed = 0
    receivers: list[Any] = list(bus.get_signal(event_type).receivers.values())  # Receivers
    for rec in receivers:
        if rec.active and _same_handler(original_handler(rec.resolve()), handler) and rec.cancel():
            removed += 1
    return removed


def handles(*event_types: enum.Enum | EventKey[Any], **subscribe_options: Any) -> Callable[[F], F]:
    """Mark a method as the handler of ``event_types`` for :meth:`EventBus.subscribe_component`.

    Returns the method unchanged (marked); stack several ``@handles`` to
    subscribe it with different options. ``subscribe_options`` are those of
    :meth:`EventBus.subscribe` except ``weak``: a component's handlers are
    always held weakly, so the component's subscriptions end when it is
    garbage-collected.

    Raises:
        InvalidEventTypeError: An event type is not an enum member or key.
        TypeError: No event type, or an option ``subscribe`` does not take
            (or ``weak``); or (when applied) the target is a ``staticmethod``
            or ``classmethod``, which no component instance could hold.
    """
    if not event_types:
        raise TypeError("handles() needs at least one event type")
    for t in event_types:
        _check_type(t)
    if "weak" in subscribe_options:
        raise TypeError("handles() takes no weak=: components are always held weakly")

    def mark(fn: F) -> F:
        if isinstance(fn, staticmethod | classmethod):
            raise TypeError(
                f"@handles marks instance methods (held weakly with their component), "
                f"not a {type(fn).__name__}"
            )
        marks = getattr(fn, _MARK, None)
        if marks is None:
            marks = []
            setattr(fn, _MARK, marks)
        marks.extend((t, subscribe_options) for t in event_types)
        return fn

    return mark


def _marked(cls: type[Any]) -> list[tuple[str, enum.Enum | EventKey[Any], dict[str, Any]]]:
    """The ``@handles`` marks of ``cls``'s attributes, in definition order (bases first)."""
    attrs: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        attrs.update(vars(klass))
    found = []
    for name, attr in attrs.items():
        marks = getattr(getattr(attr, "__func__", attr), _MARK, ())
        if marks and isinstance(attr, staticmethod | classmethod):
            # Its subscription could not end with the component: refuse it.
            raise TypeError(
                f"{cls.__qualname__}.{name} is a {type(attr).__name__}: @handles marks "
                "instance methods, held weakly with their component"
            )
        for t, options in marks:
            found.append((name, t, options))
    return found


class SubscriptionGroup:
    """The target of one token that undoes several registrations (a component's handlers)."""

    __slots__ = ("_subs",)

    def __init__(self, subs: list[Subscription]) -> None:
        self._subs = subs

    @property
    def active(self) -> bool:
        return any(s.active for s in self._subs)

    def cancel(self) -> bool:
        return any([s() for s in self._subs])


def subscribe_component(bus: BusLike, component: object) -> Subscription:
    """Subscribe every ``@handles`` method of ``component`` on ``bus``; see :func:`handles`.

    All or nothing: if one subscription is refused, those already made are
    undone before the error propagates.

    Raises:
        TypeError: A marked method is a ``staticmethod`` or ``classmethod``.
        ValueError: ``component`` has no method marked with ``@handles``.
        InvalidHandlerError: A marked method is not a one-argument callable,
            or the component cannot be weakly referenced.
    """
    marks = _marked(type(component))
    cls_name = type(component).__qualname__
    if not marks:
        raise ValueError(f"{cls_name} has no methods marked with @handles")
    subs: list[Subscription] = []
    try:
        for name, event_type, options in marks:
            subs.append(bus.subscribe(event_type, getattr(component, name), weak=True, **options))
    except BaseException:
        for sub in subs:
            sub()
        raise
    return Subscription(SubscriptionGroup(subs), f"component {cls_name} ({len(subs)})")

"""Wrapping a handler once, at subscribe time, without changing how it is held.

Handler policies (timeouts, slow-handler warnings, removal after failures)
and instrumentation (OpenTelemetry spans) wrap a handler when it is
subscribed; unwrapped subscriptions pay nothing. A wrapper is a function
``wrapper(call, info) -> call`` over *calls* ``call(target, event)``: the
target is the handler's owner for a weakly held bound method (the bus keeps
holding only a weak reference to it, so a wrapper never pins the owner) and
the handler itself otherwise.
"""

from __future__ import annotations

import enum
import functools
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import attrs

from ._holding import MethodParts, method_parts
from ._receivers import _is_async, callable_name

if TYPE_CHECKING:
    from ._buslike import BusLike
    from ._event import Event

__all__ = ["Call", "HandlerInfo", "HandlerWrapper", "Wrapped", "original_handler", "wrap_handler"]

Call: TypeAlias = Callable[[Any, "Event[Any]"], Any]
"""``call(target, event)``; a coroutine function for async handlers."""

_ORIGINAL = "_atlas_events_original"


@attrs.frozen
class HandlerInfo:
    """What a wrapper knows about the handler it wraps.

    Attributes:
        bus: The bus the handler is subscribed on.
        event_type: The type it is subscribed to (``ANY`` for all).
        name: Its qualified name, as in ``HANDLER_ERROR`` reports.
        is_async: Whether it is a coroutine function (the call must stay one).
    """

    bus: BusLike
    event_type: enum.Enum
    name: str
    is_async: bool


class HandlerWrapper(Protocol):
    """Builds a wrapped call around ``call``; called once per subscription."""

    def __call__(self, call: Call, info: HandlerInfo, /) -> Call: ...


@attrs.frozen
class Wrapped:
    """What to subscribe instead of the handler: ``subscribe(handler, weak=weak)``."""

    handler: Callable[[Event[Any]], Any]
    weak: bool


def _call_target(target: Callable[[Event[Any]], Any], event: Event[Any]) -> Any:
    return target(event)


@attrs.frozen
class _PartialOrigin:
    """What a weakly held ``partial(Cls.method, obj, *args, **kw)`` was, minus ``obj``."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    keywords: dict[str, Any]

    def call(self) -> Call:
        func, args, keywords = self.func, self.args, self.keywords

        def call(target: Any, event: Event[Any]) -> Any:
            return func(target, *args, event, **keywords)

        return call


def _weak_base(parts: MethodParts) -> tuple[Call, object]:
    """The call for a weakly held method-like handler, and what stands for it in ``off()``."""
    if not (parts.args or parts.keywords):
        return parts.func, parts.func
    origin = _PartialOrigin(parts.func, parts.args, parts.keywords)
    return origin.call(), origin


def wrap_handler(
    bus: BusLike,
    event_type: enum.Enum,
    handler: Callable[[Event[Any]], Any],
    weak: bool | None,
    wrappers: Sequence[HandlerWrapper],
) -> Wrapped:
    """Apply ``wrappers`` (innermost first) to ``handler``, keeping its weak semantics.

    A weak bound method ``obj.m`` (or a partial binding a method to ``obj``)
    becomes another bound method of ``obj`` whose function is the wrapped
    call, so the bus holds ``obj`` weakly exactly as before; a strong
    handler becomes a closure over it.
    """
    parts = method_parts(handler)
    if weak is None:
        weak = parts is not None  # as the bus decides for an unwrapped handler
    info = HandlerInfo(bus, event_type, callable_name(handler), _is_async(handler))
    origin: object
    if weak and parts is not None:
        base, origin = _weak_base(parts)
        target: Any = parts.owner
    else:
        base = origin = _call_target
        target = handler
    call = base
    for wrapper in wrappers:
        call = wrapper(call, info)
    if call is base:
        return Wrapped(handler, weak)
    if weak:
        if parts is not None:  # the bus names a bound method after its function
            call.__module__ = getattr(parts.func, "__module__", None)  # type: ignore[assignment]
            call.__qualname__ = parts.func.__qualname__
        setattr(call, _ORIGINAL, origin)
        return Wrapped(types.MethodType(call, target), True)
    return Wrapped(_strong_entry(call, target, info), False)


def _strong_entry(call: Call, target: Any, info: HandlerInfo) -> Callable[[Event[Any]], Any]:
    entry: Callable[[Event[Any]], Any]
    if info.is_async:

        async def entry(event: Event[Any]) -> Any:
            return await call(target, event)

    else:

        def entry(event: Event[Any]) -> Any:
            return call(target, event)

    entry.__qualname__ = info.name  # the bus names the subscription after the handler
    entry.__module__ = None  # type: ignore[assignment]
    setattr(entry, _ORIGINAL, target)
    return entry


def original_handler(resolved: object) -> object:
    """The handler a user subscribed, given what the bus holds for it.

    ``resolved`` is what a receiver resolves to now (``Receiver.resolve()``);
    for a wrapped subscription that is the wrapper, and this returns the
    handler behind it, so it compares equal to what was subscribed.
    """
    if isinstance(resolved, types.MethodType):
        base = getattr(resolved.__func__, _ORIGINAL, None)
        if base is _call_target:
            return resolved.__self__
        if isinstance(base, _PartialOrigin):
            return functools.partial(base.func, resolved.__self__, *base.args, **base.keywords)
        if base is not None:
            return types.MethodType(base, resolved.__self__)
        return resolved
    return getattr(resolved, _ORIGINAL, resolved)

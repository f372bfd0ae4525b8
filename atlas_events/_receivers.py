"""Receiver records: how one subscription is held and called.

Each subscription becomes a :class:`Receiver`. The bus keeps it (strongly)
in the event type's private blinker signal -- the registry of record -- and
derives from it a *dispatch entry* ``(fn, ref)`` that the publish loop calls:

* ``ref is None``: a strong handler, called as ``fn(event)``;
* otherwise ``obj = ref()``; if the referent is alive, ``fn(obj, event)``.
  Weak bound methods use ``(method.__func__, weakref(method.__self__))``, so a
  component's handler costs no wrapper call and dies with the component.

Handlers with a filter, ``once=True`` or a coroutine function go through
:meth:`Receiver.deliver`, which does the extra work; plain handlers pay
nothing for those features.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import inspect
import itertools
import logging
import sys
import types
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from ._event import ANY
from .exceptions import InvalidHandlerError, _describe

if TYPE_CHECKING:
    from ._event import Event

__all__ = [
    "ASYNC_COLLECTOR",
    "Entry",
    "Receiver",
    "ReceiverHost",
    "callable_name",
    "check_one_arg_callable",
    "entry_name",
]

log = logging.getLogger("atlas_events")

# Set by ``EventBus.publish_async``: (its loop, list to collect handler tasks in).
ASYNC_COLLECTOR: contextvars.ContextVar[
    tuple[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]] | None
] = contextvars.ContextVar("atlas_events_async_collector", default=None)

Entry: TypeAlias = list[Any]
"""A dispatch entry ``[fn, None]`` or ``[fn, weak_ref]``; see the module doc.

A list, not a tuple, so that unsubscribing can *retire* it in place: a
dispatch already iterating an older snapshot then skips the handler too.
"""


class ReceiverHost(Protocol):
    """What a receiver reports to: the bus's registry (``_registry.Registry``)."""

    def count_skip(self) -> None:
        """Count a delivery that was skipped (dead, filtered or retired handler)."""

    def skip_event(self, event: Event[Any]) -> None:
        """What a retired dispatch entry calls instead of its handler."""

    def receiver_died(self, rec: Receiver) -> None:
        """Queue ``rec`` for unlinking (called from a weakref callback: no lock)."""

    def remove_receiver(self, rec: Receiver) -> bool:
        """Unsubscribe ``rec``; ``True`` only for the call that did it."""
        ...

    def report_async_error(self, event: Event[Any], name: str, exc: Exception) -> None:
        """Report a failed async handler."""


def callable_name(fn: object) -> str:
    """A readable, qualified name for a handler or middleware."""
    if isinstance(fn, types.MethodType):
        owner = fn.__self__
        return f"{getattr(fn.__func__, '__module__', '?')}.{fn.__func__.__qualname__}" + (
            f" of {type(owner).__qualname__}" if not isinstance(owner, type) else ""
        )
    qual = getattr(fn, "__qualname__", None)
    if qual is None:
        return _describe(fn)
    mod = getattr(fn, "__module__", None)
    return f"{mod}.{qual}" if mod else str(qual)


def check_one_arg_callable(fn: object, role: str) -> None:
    """Raise :class:`InvalidHandlerError` unless ``fn(x)`` is a valid call."""
    if not callable(fn):
        raise InvalidHandlerError(fn, role)
    if role != "handler" and _is_async(fn):
        raise InvalidHandlerError(
            fn, role, f"it is a coroutine function; a {role} runs inside publish and must be sync"
        )
    if _one_arg_code(fn):
        return
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        sig.bind(None)
    except TypeError as exc:
        raise InvalidHandlerError(
            fn, role, f"it must accept exactly one positional argument (the event): {exc}"
        ) from None


_CO_VARARGS = inspect.CO_VARARGS


def _one_arg_code(fn: object) -> bool:
    """Fast path of the signature check for plain functions and bound methods.

    ``True`` when ``fn``'s code object plainly accepts one positional
    argument; ``False`` means "not sure": ask :func:`inspect.signature`
    (which costs tens of microseconds).
    """
    bound = 0
    if isinstance(fn, types.MethodType):
        fn, bound = fn.__func__, 1
    if not isinstance(fn, types.FunctionType) or hasattr(fn, "__wrapped__"):
        return False
    code = fn.__code__
    if code.co_kwonlyargcount and len(fn.__kwdefaults__ or ()) < code.co_kwonlyargcount:
        return False
    positional = code.co_argcount - bound
    required = positional - len(fn.__defaults__ or ())
    return required <= 1 and (positional >= 1 or bool(code.co_flags & _CO_VARARGS))


def _is_async(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we need the method itself
    return not inspect.isroutine(fn) and call is not None and inspect.iscoroutinefunction(call)


def _call_referent(fn: Callable[[Event[Any]], Any], event: Event[Any]) -> Any:
    return fn(event)


def entry_name(fn: Callable[..., Any], ref: Any) -> str:
    """The handler name behind a dispatch entry ``(fn, ref)`` (for error reports)."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, Receiver):
        return owner.name
    if ref is None:
        return callable_name(fn)
    if fn is _call_referent:
        return callable_name(ref())
    return f"{getattr(fn, '__module__', '?')}.{fn.__qualname__}"


class Receiver:
    """One subscription: the handler (strong or weak), its options and its state."""

    __slots__ = (
        "__weakref__",
        "_bound_fn",
        "_claims",
        "_ref",
        "_strong",
        "_tasks",
        "active",
        "bus",
        "entry",
        "event_type",
        "filter",
        "is_async",
        "loop",
        "name",
        "once",
        "order",
    )

    def __init__(
        self,
        bus: ReceiverHost,
        event_type: enum.Enum,
        handler: Callable[[Event[Any]], Any],
        *,
        weak: bool | None,
        filter: Callable[[Event[Any]], bool] | None,
        once: bool,
        order: int,
    ) -> None:
        check_one_arg_callable(handler, "handler")
        if filter is not None:
            check_one_arg_callable(filter, "filter")
        self.bus = bus
        self.event_type = event_type
        self.filter = filter
        self.once = once
        self.order = order
        self.active = True
        self.name = callable_name(handler)
        self._claims = itertools.count()
        self.is_async = _is_async(handler)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] | None = None
        if self.is_async:
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:
                raise InvalidHandlerError(
                    handler,
                    "handler",
                    "it is a coroutine function, and async handlers must be subscribed "
                    "from a running event loop (they run on the loop that subscribed them)",
                ) from None
            self._tasks = set()

        is_method = isinstance(handler, types.MethodType)
        if weak is None:
            weak = is_method
        self._strong: Callable[[Event[Any]], Any] | None = None
        self._ref: Any = None
        fn: Callable[..., Any]
        if not weak:
            self._strong = handler
            fn = handler
        elif is_method:
            owner = handler.__self__  # type: ignore[attr-defined]
            fn = handler.__func__  # type: ignore[attr-defined]
            self._ref = self._weak(owner, handler)
        else:
            fn = _call_referent
            self._ref = self._weak(handler, handler)

        if filter is not None or once or self.is_async:
            self.entry: Entry = [self.deliver, None]
        else:
            self.entry = [fn, self._ref]
        self._bound_fn: Callable[..., Any] | None = fn if (weak and is_method) else None

    def _weak(self, obj: object, handler: object) -> weakref.ref[Any]:
        bus_ref = weakref.ref(self.bus)
        self_ref = weakref.ref(self)

        def on_dead(_: object) -> None:
            # Runs inside the garbage collector, possibly while this very
            # thread holds a bus lock: take no lock, only mark and queue.
            if sys.is_finalizing():
                return
            rec = self_ref()
            bus = bus_ref()
            if rec is not None:
                rec.retire()
                if bus is not None:
                    bus.receiver_died(rec)

        try:
            return weakref.ref(obj, on_dead)
        except TypeError:
            raise InvalidHandlerError(
                handler,
                "handler",
                f"weak=True, but {type(obj).__name__} cannot be weakly referenced",
            ) from None

    # -- calling -------------------------------------------------------------

    def resolve(self) -> Callable[[Event[Any]], Any] | None:
        """The callable to invoke now, or ``None`` if its owner is gone."""
        if self._strong is not None:
            return self._strong
        obj = self._ref()
        if obj is None:
            return None
        fn = self._bound_fn
        if fn is None:
            return obj  # type: ignore[no-any-return]
        return types.MethodType(fn, obj)

    def deliver(self, event: Event[Any]) -> None:
        """Call the handler for ``event``, applying filter / once / async."""
        handler = self.resolve()
        if handler is None or not self.active:
            self.bus.count_skip()
            return
        flt = self.filter
        if flt is not None and not flt(event):
            self.bus.count_skip()
            return
        if self.once:
            if next(self._claims):
                self.bus.count_skip()
                return
            self.cancel()
        if self.is_async:
            self._schedule(handler, event)
        else:
            handler(event)

    def __call__(self, event: Event[Any]) -> None:
        """Blinker-style call: ``signal.send(event)`` reaches the handler."""
        self.deliver(event)

    # -- async ---------------------------------------------------------------

    def _schedule(self, handler: Callable[[Event[Any]], Any], event: Event[Any]) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            self.bus.count_skip()
            return
        ctx = contextvars.copy_context()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._start(handler, event, ctx)
        else:
            loop.call_soon_threadsafe(self._start, handler, event, ctx)

    def _start(
        self, handler: Callable[[Event[Any]], Any], event: Event[Any], ctx: contextvars.Context
    ) -> None:
        loop = self.loop
        tasks = self._tasks
        if loop is None or tasks is None:
            return
        coro: Coroutine[Any, Any, Any] = handler(event)
        task = loop.create_task(coro, context=ctx)
        tasks.add(task)
        collector = ctx.get(ASYNC_COLLECTOR)
        if collector is not None and collector[0] is loop:
            collector[1].append(task)
        task.add_done_callback(functools.partial(self._done, event=event))

    def _done(self, task: asyncio.Future[Any], *, event: Event[Any]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and isinstance(exc, Exception):
            self.bus.report_async_error(event, self.name, exc)

    def pending_tasks(self) -> list[asyncio.Future[Any]]:
        """Tasks of this async handler that have not finished yet."""
        return list(self._tasks or ())

    # -- token target --------------------------------------------------------

    def cancel(self) -> bool:
        """Unsubscribe (idempotent)."""
        return self.bus.remove_receiver(self)

    def retire(self) -> None:
        """Mark inactive and neuter the dispatch entry (no lock; GC-safe).

        One slice assignment, atomic under the GIL: a dispatch iterating a
        snapshot that still holds the entry calls the bus's skip counter
        instead of the handler from now on.
        """
        self.active = False
        self.entry[:] = (self.bus.skip_event, None)

    def describe(self) -> str:
        t = self.event_type
        tname = "ANY" if t is ANY else f"{type(t).__name__}.{t.name}"
        return f"{self.name} -> {tname}"

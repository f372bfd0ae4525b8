"""Receiver records: how one subscription is held and called.

Each subscription becomes a :class:`Receiver`. The bus keeps it (strongly)
in the event type's private blinker signal -- the registry of record -- and
derives from it a *dispatch entry* ``(fn, ref)`` that the publish loop calls:

* ``ref is None``: a strong handler that returns nothing, called as
  ``fn(event)`` (its result is not looked at: see ``_returns``);
* ``ref is CHECK_RESULT``: a strong handler that may return an awaitable,
  called as ``fn(event)``;
* otherwise ``obj = ref()``; if the referent is alive, ``fn(obj, event)``.
  Weak bound methods use ``(method.__func__, weakref(method.__self__))``, so a
  component's handler costs no wrapper call and dies with the component.

Handlers with a filter, ``once=True``, a coroutine function or a partial
with extra arguments go through :meth:`Receiver.deliver`, which does the
extra work; plain handlers pay nothing for those features.

Async work is never dropped: a coroutine function runs on its loop (the
loop it was subscribed on, an explicit ``loop=``, or -- subscribed before
any loop ran -- the loop running where it is first dispatched); a sync
handler that *returns* an awaitable has it scheduled the same way
(:func:`handler_returned`); when there is no loop to run it on, a
:class:`HandlerLoopError` is reported as the handler's failure.
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
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from ._context import COLLECTOR, CONTEXT, read_context
from ._event import ANY
from ._holding import method_parts, pins
from ._logging import log_extra
from ._returns import returns_only_none
from .exceptions import (
    HandlerLoopError,
    InvalidHandlerError,
    SubscriptionLeakWarning,
    _describe,
)

if TYPE_CHECKING:
    import blinker

    from ._event import Event

__all__ = [
    "ASYNC_COLLECTOR",
    "CHECK_RESULT",
    "Entry",
    "Receiver",
    "ReceiverHost",
    "callable_name",
    "check_one_arg_callable",
    "entry_name",
    "handler_returned",
]

log = logging.getLogger("atlas_events")

# Set by ``EventBus.publish_async``: (its loop, list to collect handler tasks in).
ASYNC_COLLECTOR: contextvars.ContextVar[
    tuple[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]] | None
] = contextvars.ContextVar("atlas_events_async_collector", default=None)

Entry: TypeAlias = list[Any]
"""A dispatch entry ``[fn, None]``, ``[fn, CHECK_RESULT]`` or ``[fn, weak_ref]`` (module doc).

A list, not a tuple, so that unsubscribing can *retire* it in place: a
dispatch already iterating an older snapshot then skips the handler too.
"""


class _CheckResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CHECK_RESULT"


CHECK_RESULT: Final = _CheckResult()
"""The ``ref`` of a strong handler's entry whose return value the loop looks at."""


class ReceiverHost(Protocol):
    """What a receiver reports to: the bus's registry (``_registry.Registry``)."""

    name: str

    def count_skip(self) -> None:
        """Count a delivery that was skipped (dead, filtered or retired handler)."""

    def count_loop_closed(self) -> None:
        """Count a receiver that unsubscribed itself because its event loop closed."""

    def skip_event(self, event: Event[Any]) -> None:
        """What a retired dispatch entry calls instead of its handler."""

    def receiver_died(self, rec: Receiver) -> None:
        """Queue ``rec`` for unlinking (called from a weakref callback: no lock)."""

    def remove_receiver(self, rec: Receiver) -> bool:
        """Unsubscribe ``rec``; ``True`` only for the call that did it."""
        ...

    def report_async_error(self, event: Event[Any], name: str, exc: Exception) -> None:
        """Report a failed async handler."""

    def get_signal(self, event_type: enum.Enum) -> blinker.Signal:
        """The bus's private signal for ``event_type`` (the registry of record)."""
        ...


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
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise InvalidHandlerError(
            fn, role, "it is a generator function: calling it would not run its body"
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
    if ref is None or ref is CHECK_RESULT:
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
        "_extra",
        "_filter_fn",
        "_rebinds",
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
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        check_one_arg_callable(handler, "handler")
        if filter is not None:
            check_one_arg_callable(filter, "filter")
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop or None, got {loop!r}")
        self.bus = bus
        self.event_type = event_type
        self.filter = filter
        self._filter_fn: Callable[[Any, Event[Any]], bool] | None = None
        self.once = once
        self.order = order
        self.active = True
        self.name = callable_name(handler)
        self._claims = itertools.count()
        self.is_async = _is_async(handler)
        # The loop async work of this handler runs on: explicit, else the
        # loop running at subscribe time, else bound at first dispatch.
        self.loop = loop if loop is not None else _running_loop()
        # Bound at first dispatch (module-level registration): such a handler
        # follows the application to its next loop when this one closes.
        self._rebinds = self.loop is None
        self._tasks: set[asyncio.Future[Any]] = set()

        parts = method_parts(handler)
        if weak is None:
            weak = parts is not None
        self._strong: Callable[[Event[Any]], Any] | None = None
        self._ref: Any = None
        self._bound_fn: Callable[..., Any] | None = None
        self._extra: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        fn: Callable[..., Any]
        if not weak:
            self._strong = fn = handler
            owner: object = None
        elif parts is not None:
            owner, fn = parts.owner, parts.func
            self._ref = self._weak(owner, handler)
            self._bound_fn = fn
            if parts.args or parts.keywords:
                self._extra = (parts.args, parts.keywords)
        else:
            owner, fn = handler, _call_referent
            self._ref = self._weak(handler, handler)
        if filter is not None and owner is not None:
            self._hold_filter(filter, owner)

        if filter is not None or once or self.is_async or self._extra is not None:
            self.entry: Entry = [self.deliver, None]  # deliver() adopts awaitables itself
        elif self._ref is None and not returns_only_none(fn):
            self.entry = [fn, CHECK_RESULT]  # may return an awaitable: the loop looks
        else:
            self.entry = [fn, self._ref]

    def _hold_filter(self, filter: Callable[[Event[Any]], bool], owner: object) -> None:
        """Hold a filter no more strongly than the weakly held ``owner``.

        A filter that is a method of the owner is kept as its function and
        called with the owner (so it dies with it); a filter that reaches
        the owner any other way cannot be weak: warn.
        """
        parts = method_parts(filter)
        if parts is not None and parts.owner is owner and not (parts.args or parts.keywords):
            self.filter = None
            self._filter_fn = parts.func
        elif pins(filter, owner):
            warnings.warn(
                SubscriptionLeakWarning(
                    f"the filter {callable_name(filter)} of the weakly held handler {self.name} "
                    f"keeps its owner ({type(owner).__qualname__}) alive, so the subscription "
                    "never ends by itself; use a method of the owner as the filter, or "
                    "weak=False and unsubscribe explicitly"
                ),
                stacklevel=4,
            )

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
        if self._extra is not None:
            args, keywords = self._extra
            return functools.partial(fn, obj, *args, **keywords)
        return types.MethodType(fn, obj)

    def _wants(self, event: Event[Any]) -> bool:
        flt = self.filter
        if flt is not None:
            return bool(flt(event))
        owner = self._ref() if self._ref is not None else None
        return owner is not None and bool(self._filter_fn(owner, event))  # type: ignore[misc]

    def deliver(self, event: Event[Any]) -> None:
        """Call the handler for ``event``, applying filter / once / async."""
        handler = self.resolve()
        if handler is None or not self.active:
            self.bus.count_skip()
            return
        if (self.filter is not None or self._filter_fn is not None) and not self._wants(event):
            self.bus.count_skip()
            return
        if self.once:
            if next(self._claims):
                self.bus.count_skip()
                return
            self.cancel()
        if self.is_async:
            self._schedule(functools.partial(handler, event), event)
            return
        result = handler(event)
        if result is not None and inspect.isawaitable(result):
            self.adopt(result, event)

    def __call__(self, event: Event[Any]) -> None:
        """Blinker-style call: ``signal.send(event)`` reaches the handler."""
        self.deliver(event)

    # -- async ---------------------------------------------------------------

    def _target_loop(self) -> asyncio.AbstractEventLoop | None:
        """This handler's loop; bound to the running loop at first dispatch if unset.

        A handler bound that way is bound again, the same way, once its loop
        has closed (``asyncio.run()`` called again, a loop per test); a
        handler given ``loop=`` or subscribed on a running loop is not.
        """
        loop = self.loop
        if loop is None or (self._rebinds and loop.is_closed()):
            loop = self.loop = _running_loop()
        return loop

    def adopt(self, awaitable: Awaitable[Any], event: Event[Any]) -> None:
        """Run an awaitable that the (sync) handler returned, as if it were async.

        Raises:
            HandlerLoopError: There is no open loop to run it on (the
                awaitable is closed, never silently dropped).
        """
        loop = self._target_loop()
        if loop is None or loop.is_closed():
            _discard(awaitable)
            where = "its event loop is closed" if loop is not None else "no event loop is running"
            raise HandlerLoopError(self.name, f"it returned {type(awaitable).__name__} but {where}")
        self._schedule(lambda: awaitable, event)

    def _schedule(self, start: Callable[[], Awaitable[Any]], event: Event[Any]) -> None:
        loop = self._target_loop()
        if loop is None:
            raise HandlerLoopError(
                self.name,
                "it was subscribed outside a running event loop and dispatched from a "
                "thread with no running loop; subscribe it with loop=... or publish from "
                "async code first",
            )
        if loop.is_closed():
            self._loop_closed(event)
            return
        ctx = contextvars.copy_context()
        if COLLECTOR.here():
            # Dispatched by code the collector runs: its dispatch context is
            # kept off the context variable (see _context.Collector), so the
            # copy holds the interrupted code's. Setting it in the copy leaves
            # the interrupted context's own mapping alone.
            ctx.run(CONTEXT.set, read_context())
        if _running_loop() is loop:
            self._start(start, event, ctx)
            return
        try:
            loop.call_soon_threadsafe(self._start, start, event, ctx)
        except RuntimeError:  # closed between the check and the call
            self._loop_closed(event)

    def _loop_closed(self, event: Event[Any]) -> None:
        """The handler's loop is closed: it can never run again, so unsubscribe it."""
        self.bus.count_skip()
        # A once handler was unsubscribed by this very delivery: count it too.
        if self.cancel() or self.once:
            self.bus.count_loop_closed()
            log.warning(
                "async handler %s unsubscribed: its event loop is closed",
                self.name,
                extra=log_extra(event, handler=self.name, bus=self.bus.name),
            )

    def _start(
        self, start: Callable[[], Awaitable[Any]], event: Event[Any], ctx: contextvars.Context
    ) -> None:
        loop = self.loop
        if loop is None:  # pragma: no cover - _schedule bound it
            return
        try:
            awaitable = ctx.run(start)
            if inspect.iscoroutine(awaitable):
                task: asyncio.Future[Any] = loop.create_task(awaitable, context=ctx)
            else:  # a future of another loop, an object with __await__...
                task = asyncio.ensure_future(awaitable, loop=loop)
        except Exception as exc:  # reported like the handler's own failure, never lost
            self.bus.report_async_error(event, self.name, exc)
            return
        self._tasks.add(task)
        collector = ctx.get(ASYNC_COLLECTOR)
        if collector is not None and collector[0] is loop:
            collector[1].append(task)
        task.add_done_callback(functools.partial(self._done, event=event))

    def _done(self, task: asyncio.Future[Any], *, event: Event[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and isinstance(exc, Exception):
            self.bus.report_async_error(event, self.name, exc)

    def pending_tasks(self) -> list[asyncio.Future[Any]]:
        """Tasks of this async handler that have not finished yet."""
        return list(self._tasks)

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


def handler_returned(
    bus: ReceiverHost, event: Event[Any], fn: Callable[..., Any], ref: Any, result: object
) -> None:
    """What the dispatch loop does with a handler's non-``None`` return value.

    An awaitable (``lambda e: save(e)``, an ``async def`` under a sync
    decorator) is scheduled like an async handler's coroutine on the
    subscription's loop; any other value is ignored.

    Raises:
        HandlerLoopError: There is no loop to run the awaitable on.
    """
    if not inspect.isawaitable(result):
        return
    rec = _receiver_of(bus, event.type, fn, ref)
    if rec is None:  # pragma: no cover - the entry was just called, so it is connected
        _discard(result)
        raise HandlerLoopError(entry_name(fn, ref), "its subscription is gone")
    rec.adopt(result, event)


def _receiver_of(bus: ReceiverHost, event_type: enum.Enum, fn: Any, ref: Any) -> Receiver | None:
    """The receiver whose dispatch entry is ``[fn, ref]`` (a rare, slow lookup)."""
    for et in (event_type, ANY):
        for rec in list(bus.get_signal(et).receivers.values()):
            if isinstance(rec, Receiver) and rec.entry[0] is fn and rec.entry[1] is ref:
                return rec
    return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close an awaitable that will never run (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
    elif isinstance(awaitable, asyncio.Future):
        awaitable.cancel()

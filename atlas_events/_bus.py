"""The event bus."""

from __future__ import annotations

import asyncio
import enum
import functools
import itertools
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from types import FrameType, MappingProxyType, TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    NoReturn,
    Protocol,
    TypeVar,
    cast,
    overload,
)

import blinker
from readerwriterlock.rwlock import RWLockWrite

from . import _registration, _waiting
from ._context import CONTEXT as _CONTEXT
from ._context import correlate, current_correlation_id
from ._event import _SEQ_SET as _set_seq
from ._event import (
    ANY,
    EMPTY_METADATA,
    Event,
    EventKey,
    EventType,
    _EventFields,
    copy_event,
    in_context,
    trusted_event,
)
from ._history import History, select
from ._ids import _SOURCE
from ._logging import log_extra
from ._policies import HandlerPolicy, PolicyCounters, wrap_subscription
from ._receivers import (
    ASYNC_COLLECTOR,
    Entry,
    Receiver,
    callable_name,
    check_one_arg_callable,
    entry_name,
    handler_returned,
)
from ._registration import KeyDecorator
from ._release import KEPT as _kept
from ._release import release_kept
from ._stats import BusStats, HandlerFailure, SinkStats
from ._subscription import Subscription
from ._wrappers import HandlerWrapper
from .exceptions import (
    BusClosedError,
    HandlerError,
    InvalidEventTypeError,
    InvalidMiddlewareResultError,
    MiddlewareError,
    PayloadTypeError,
    RecursionDepthError,
    ScopeError,
)

if TYPE_CHECKING:
    from ._scoped import ScopedEventBus
    from ._streams import EventStream, Policy, Replay
    from .middleware import Middleware

__all__ = ["EventBus", "Sink", "correlate", "current_correlation_id"]

T = TypeVar("T")
R = TypeVar("R")
_F = TypeVar("_F", bound=Callable[..., Any])
log = logging.getLogger("atlas_events")

_time = time.time
_new_event = object.__new__
_ids = _SOURCE
_HANDLER_ERROR: Final = EventType.HANDLER_ERROR


# Builtin types whose values can equal (and hash like) an enum member with
# that mixin: never event types themselves.
class Sink(Protocol):
    """Something fed every recorded event: an async stream, a bridge outbox.

    ``push`` is called while the bus holds its recording lock, in ``seq``
    order; it must be quick, must not block and must not publish.
    """

    kind: str
    blocks: bool

    def push(self, event: Event[Any]) -> None: ...

    def wait_for_room(self) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> SinkStats: ...


class _Registration(Generic[R]):
    """A registered middleware or sink: the target of its :class:`Subscription`."""

    __slots__ = ("_remove", "active", "item")

    def __init__(self, item: R, remove: Callable[[_Registration[R]], bool]) -> None:
        self.item = item
        self.active = True
        self._remove = remove

    def cancel(self) -> bool:
        return self._remove(self)


class _RegistryLock:
    """One side of the registry's read/write lock; knows if this thread holds the lock.

    The garbage collector may run a finalizer at any allocation, also while
    this thread is inside a registry operation, and a finalizer may well
    unsubscribe (``__del__`` calling a token, an abandoned stream detaching
    itself). The lock is not reentrant: such a call must not wait for it. It
    checks :attr:`held` and leaves its work in the bus's queues; the holder
    does that work before it releases the write lock, or right after it
    releases a read lock.
    """

    __slots__ = ("_bus", "_local", "_lock", "_write")

    def __init__(self, bus: EventBus, lock: Any, local: threading.local, write: bool) -> None:
        self._bus = bus
        self._lock = lock
        self._local = local
        self._write = write

    @property
    def held(self) -> bool:
        """Whether this thread holds the registry lock (either side)."""
        return bool(getattr(self._local, "depth", 0))

    def __enter__(self) -> None:
        self._lock.acquire()
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        bus = self._bus
        try:
            if self._write:
                bus._purge_dead_locked()
        finally:
            self._local.depth -= 1
            self._lock.release()
        if not self._write and (bus._dead or bus._deferred) and not self.held:
            bus._purge_dead()


def _type_label(t: enum.Enum) -> str:
    return "ANY" if t is ANY else f"{type(t).__name__}.{t.name}"


class EventBus:
    """An in-process event bus.

    Args:
        history_limit: Events kept in history (oldest evicted); 0 keeps none.
        run_history_limit: Events kept per correlation id ("run").
        max_runs: Runs kept (least recently used evicted).
        max_depth: How deeply handlers may nest publishes before
            :class:`RecursionDepthError`.
        raise_handler_errors: Re-raise handler exceptions (as an
            ``ExceptionGroup`` of :class:`HandlerError`, after every handler
            ran) instead of publishing ``HANDLER_ERROR``. Meant for tests.
        name: A label for diagnostics.
        terminal_types: Event types that end a run; async streams never drop
            them (``SYSTEM_SHUTDOWN`` is always terminal).

    Publishing is thread-safe and lock-light: the bus takes its recording
    lock only to give the event its ``seq`` and append it to history, and
    calls handlers *outside* every lock, so handlers may publish, subscribe,
    unsubscribe or add middleware on the same bus.
    """

    _parent: EventBus | None = None
    _scope: tuple[str, ...] = ()

    def __init__(
        self,
        history_limit: int = 1000,
        *,
        run_history_limit: int = 500,
        max_runs: int = 200,
        max_depth: int = 64,
        raise_handler_errors: bool = False,
        name: str = "root",
        terminal_types: tuple[enum.Enum, ...] = (),
    ) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"max_depth must be an int >= 1, got {max_depth!r}")
        for t in terminal_types:
            if not isinstance(t, enum.Enum) or t is ANY:
                raise InvalidEventTypeError(t, allow_any=False)
        self._history = History(history_limit, run_history_limit, max_runs)
        self._events = self._history._events  # the deque, appended to inline
        self.max_depth = max_depth
        self.raise_handler_errors = raise_handler_errors
        self.name = name
        self.terminal_types: frozenset[enum.Enum] = frozenset(
            (EventType.SYSTEM_SHUTDOWN, *terminal_types)
        )
        # By identity, for the same reason as the registries below.
        self.terminal_ids: frozenset[int] = frozenset(map(id, self.terminal_types))
        self._lock = threading.RLock()
        self._lock_owned: Callable[[], bool] = self._lock._is_owned  # type: ignore[attr-defined]
        rw = RWLockWrite()
        holders = threading.local()
        self._rlock = _RegistryLock(self, rw.gen_rlock(), holders, write=False)
        self._wlock = _RegistryLock(self, rw.gen_wlock(), holders, write=True)
        # Registries are keyed by id(member), never by the member itself:
        # members of IntEnum / StrEnum classes hash and compare by value, so
        # A.X and B.Y with equal values would share a key. _members keeps
        # every keyed member alive (so its id cannot be reused).
        self._members: dict[int, enum.Enum] = {}
        self._signals: dict[int, blinker.Signal] = {}
        self._routes: dict[int, tuple[Entry, ...]] = {}
        self._order = itertools.count()
        self._dead: deque[Receiver] = deque()
        self._deferred: deque[Callable[[], object]] = deque()  # see _RegistryLock
        self._middleware: tuple[Middleware, ...] = ()
        self._mw_records: list[_Registration[Middleware]] = []
        self._sinks: tuple[Sink, ...] = ()
        self._blocking_sinks: tuple[Sink, ...] = ()
        self._sink_records: list[_Registration[Sink]] = []
        self._declared: dict[int, tuple[enum.Enum, type[Any]]] = {}
        self._children: weakref.WeakSet[EventBus] = weakref.WeakSet()
        self._closed = False
        self._seq = 0
        self._delivered = 0
        self._skipped = 0
        self._dropped = 0
        self._handler_errors = 0
        self._async_errors = 0
        self._async_timeouts = 0
        self._handler_wrappers: tuple[HandlerWrapper, ...] = ()  # see _add_handler_wrapper
        self._waits = _waiting.Waits()  # wait_for calls in progress, ended by close()
        self._policy_counters = PolicyCounters()
        self._loop_closed_unsubscribed = 0

    # ------------------------------------------------------------------ info

    @property
    def scope_path(self) -> tuple[str, ...]:
        """The scope path of events published here (``()`` on a root bus)."""
        return self._scope

    @property
    def parent(self) -> EventBus | None:
        """The bus this one forwards to, ``None`` for a root bus."""
        return self._parent

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self.name!r}{state} seq={self._seq}>"

    # --------------------------------------------------------------- signals

    def _signal(self, event_type: enum.Enum) -> blinker.Signal:
        key = id(event_type)
        sig = self._signals.get(key)
        if sig is None:
            self._members[key] = event_type
            sig = self._signals[key] = blinker.Signal(f"{self.name}: {_type_label(event_type)}")
        return sig

    def get_signal(self, event_type: enum.Enum | EventKey[Any]) -> blinker.Signal:
        """Return this bus's private blinker signal for ``event_type``.

        The signal is the registry of record: each subscription is one of its
        receivers (``signal.receivers``), and ``signal.send(event)`` calls them
        with their filter / once / weak semantics (bypassing middleware and
        history). Two buses never share a signal, and blinker's global
        ``signal()`` namespace is never used. Subscribe through
        :meth:`subscribe`, not ``signal.connect``: the bus dispatches from a
        snapshot it rebuilds on every subscribe and unsubscribe.
        """
        et = self._check_type(event_type, allow_any=True)
        with self._wlock:
            return self._signal(et)

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
        event.

        Raises:
            InvalidEventTypeError: ``event_type`` is not an enum member.
            InvalidHandlerError: ``handler`` or ``filter`` is not a one-argument
                callable.
            TypeError: ``loop`` is not an event loop.
            ValueError: A policy limit is not positive, or ``timeout`` was
                given for a synchronous handler.
            BusClosedError: The bus is closed.
        """
        et = self._check_type(event_type, allow_any=True)
        if not isinstance(once, bool):
            raise TypeError(f"once must be a bool, got {once!r}")
        if weak is not None and not isinstance(weak, bool):
            raise TypeError(f"weak must be a bool or None, got {weak!r}")
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
        rec = Receiver(
            self,
            et,
            handler,
            weak=weak,
            filter=filter,
            once=once,
            order=next(self._order),
            loop=loop,
        )
        with self._wlock:
            if self._closed:
                raise BusClosedError(self.name, "subscribe")
            self._purge_dead_locked()
            self._signal(et).connect(rec, weak=False)
            self._rebuild_locked(et)
        sub = Subscription(rec, rec.describe())
        if policy is not None:
            policy.bind(sub)
        return sub

    def _must_defer(self) -> bool:
        """Whether this thread is inside a bus lock (so a finalizer must not wait).

        True inside a registry operation, and inside the recording step,
        where another thread may hold the registry lock while it waits for
        the recording lock (attaching a stream): waiting there would deadlock.
        """
        return self._wlock.held or self._lock_owned()

    def _remove_receiver(self, rec: Receiver) -> bool:
        if self._must_defer():  # a finalizer inside one of this thread's bus operations
            was_active = rec.active
            rec.retire()
            self._dead.append(rec)
            return was_active
        with self._wlock:
            was_active = rec.active
            rec.retire()
            self._disconnect_locked(rec)
            self._purge_dead_locked()
        return was_active

    def _disconnect_locked(self, rec: Receiver) -> None:
        sig = self._signals.get(id(rec.event_type))
        if sig is not None and id(rec) in sig.receivers:
            sig.disconnect(rec)
            self._rebuild_locked(rec.event_type)

    def _receiver_died(self, rec: Receiver) -> None:
        """Weakref callback path: queue only (we may be inside a lock)."""
        self._dead.append(rec)

    def _purge_dead_locked(self) -> None:
        dead = self._dead
        deferred = self._deferred
        while dead or deferred:
            try:
                rec = dead.popleft()
            except IndexError:  # only deferred work left (or raced with another purger)
                try:
                    deferred.popleft()()
                except IndexError:  # pragma: no cover - raced with another purger
                    break
                continue
            self._disconnect_locked(rec)

    def _purge_dead(self) -> None:
        if self._dead or self._deferred:
            with self._wlock:
                pass  # leaving the write lock purges

    def _unregister(
        self, rec: _Registration[Any], unlink: Callable[[_Registration[Any]], None]
    ) -> bool:
        """Retire a middleware or sink registration once; ``False`` if it already was."""
        if self._must_defer():  # a finalizer inside one of this thread's bus operations
            return self._defer(rec, unlink)
        with self._wlock:
            if not rec.active:
                return False
            rec.active = False
            unlink(rec)
        return True

    def _defer(self, rec: _Registration[Any], unlink: Callable[[_Registration[Any]], None]) -> bool:
        """Unregister ``rec`` when this thread leaves the registry lock (see _RegistryLock)."""
        if not rec.active:
            return False
        rec.active = False
        self._deferred.append(functools.partial(unlink, rec))
        return True

    def _rebuild_locked(self, event_type: enum.Enum) -> None:
        """Rebuild dispatch snapshots after a change to ``event_type``'s receivers."""
        any_recs = _receivers_of(self._signals.get(id(ANY)))
        keys = list(self._routes) if event_type is ANY else [id(event_type)]
        if event_type is not ANY:
            self._members[keys[0]] = event_type
        for key in keys:
            recs = _receivers_of(self._signals.get(key))
            if any_recs:
                recs.extend(any_recs)
                recs.sort(key=_order_of)
            self._routes[key] = tuple(r.entry for r in recs if r.active)

    def _route_for(self, event_type: enum.Enum) -> tuple[Entry, ...]:
        route = self._routes.get(id(event_type))
        if route is None:
            with self._wlock:
                self._rebuild_locked(event_type)
                route = self._routes[id(event_type)]
        return route

    def _skip_event(self, event: Event[Any]) -> None:
        """What a retired dispatch entry calls instead of its handler."""
        self._count_skip()

    def _count_loop_closed(self) -> None:
        """A receiver unsubscribed itself because its event loop closed."""
        with self._lock:
            self._loop_closed_unsubscribed += 1

    def _count_skip(self) -> None:
        with self._lock:
            self._skipped += 1
        if self._dead:
            self._purge_dead()

    # ------------------------------------------------------------- middleware

    def add_middleware(self, fn: Middleware) -> Subscription:
        """Append ``fn`` to the middleware chain; return a token that removes it.

        ``fn(event)`` returns the event (possibly a changed copy) or ``None``
        to drop it. Middlewares run in the order added, before the event is
        recorded or delivered.

        Raises:
            InvalidHandlerError: ``fn`` is not a one-argument callable.
        """
        check_one_arg_callable(fn, "middleware")
        if self._closed:
            raise BusClosedError(self.name, "add middleware")
        rec = _Registration(fn, self._remove_middleware)
        with self._wlock:
            if self._closed:  # again: close() may have run since the check above
                raise BusClosedError(self.name, "add middleware")
            self._mw_records.append(rec)
            self._middleware = tuple(r.item for r in self._mw_records)
        return Subscription(rec, f"middleware {callable_name(fn)}")

    def _remove_middleware(self, rec: _Registration[Middleware]) -> bool:
        return self._unregister(rec, self._unlink_middleware_locked)

    def _unlink_middleware_locked(self, rec: _Registration[Middleware]) -> None:
        if rec in self._mw_records:
            self._mw_records.remove(rec)
            self._middleware = tuple(r.item for r in self._mw_records)

    # ---------------------------------------------------------- typed payloads

    def declare(self, key: EventKey[Any]) -> None:
        """Check payloads of ``key.type`` against ``key.payload`` on this bus tree.

        After this, publishing ``key.type`` with a payload that is not a
        ``key.payload`` raises :class:`PayloadTypeError`, even through the
        bare enum member. Declarations are shared by a root bus and all its
        scopes.
        """
        if not isinstance(key, EventKey):
            raise TypeError(f"declare() takes an EventKey (see atlas_events.declare), got {key!r}")
        existing = self._declared.get(id(key.type))
        if existing is not None and existing[1] is not key.payload:
            raise ValueError(
                f"{key.type!r} is already declared to carry {existing[1].__qualname__}, "
                f"not {_qualname(key.payload)}"
            )
        self._declared[id(key.type)] = (key.type, key.payload)

    # ---------------------------------------------------------------- publish

    def _check_type(self, event_type: object, *, allow_any: bool) -> enum.Enum:
        if isinstance(event_type, EventKey):
            event_type = event_type.type
        if not isinstance(event_type, enum.Enum) or (event_type is ANY and not allow_any):
            raise InvalidEventTypeError(event_type, allow_any=allow_any)
        return event_type

    def _resolve(self, event_type: object, data: object) -> tuple[enum.Enum, tuple[Entry, ...]]:
        """Slow path of publish: validate the type, check a typed key's payload."""
        if isinstance(event_type, EventKey) and not isinstance(data, event_type.payload):
            raise PayloadTypeError(event_type.type, event_type.payload, type(data))
        et = self._check_type(event_type, allow_any=False)
        self._check_payload(et, data)
        return et, self._route_for(et)

    def _check_payload(self, event_type: enum.Enum, data: object) -> None:
        declared = self._declared.get(id(event_type))
        if declared is not None and not isinstance(data, declared[1]):
            raise PayloadTypeError(event_type, declared[1], type(data))

    @overload
    def publish(
        self,
        event_type: EventKey[T],
        # The Callable member is a typing device, never a valid payload: mypy
        # infers T from the key first, so a wrong payload is an [arg-type]
        # error naming the expected class (tests/typing/test_typing.py).
        data: T | Callable[[T], NoReturn],
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        propagate: bool = True,
    ) -> str: ...

    @overload
    def publish(
        self,
        event_type: enum.Enum,
        data: Any = None,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        propagate: bool = True,
    ) -> str: ...

    def publish(
        self,
        event_type: enum.Enum | EventKey[Any],
        data: Any = None,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        propagate: bool = True,
    ) -> str:
        """Publish an event and return its id.

        The event runs through the middleware chain, is recorded in history,
        handed to async streams and delivered to the handlers, in that order;
        on a scoped bus it is then forwarded to the parent (unless
        ``propagate=False``). If a handler raises, the other handlers still
        run and a ``HANDLER_ERROR`` event reports it.

        Raises:
            InvalidEventTypeError: ``event_type`` is not an enum member.
            PayloadTypeError: ``data`` does not match a declared payload class.
            MiddlewareError: A middleware raised or returned a non-event.
            RecursionDepthError: Handlers nested publishes beyond ``max_depth``.
            BusClosedError: The bus is closed.
        """
        # The hot path (see docs/performance.md): every line here is paid per
        # event, so rare cases (bad input, declared payloads, metadata) branch
        # off to helpers and the common case reads each attribute once.
        if self._closed:
            raise BusClosedError(self.name)
        # Keyed by identity: a plain value equal to a str- or int-valued member
        # ("task.started" == EventType.TASK_STARTED), an unhashable object or a
        # member of another enum with the same value finds no route here and
        # is validated (and refused, or routed) by _resolve.
        route = self._routes.get(id(event_type))
        if route is None:
            event_type, route = self._resolve(event_type, data)
        elif self._declared:
            self._check_payload(event_type, data)  # type: ignore[arg-type]
        ctx = _CONTEXT.get()
        if ctx is None:
            parent_id = None
            depth = 0
        else:
            parent_id, depth, cid = ctx
            if correlation_id is None:
                correlation_id = cid
            if depth >= self.max_depth:
                raise RecursionDepthError(depth + 1, self.max_depth, event_type)
        if source is None and metadata is None:
            md: Mapping[str, Any] = EMPTY_METADATA
        else:
            md = _checked_metadata(source, metadata)
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise TypeError(
                f"correlation_id must be a str or None, got {type(correlation_id).__name__}"
            )
        # Built slot by slot on the mutable layout, then frozen by a class
        # swap: no __init__ frame, a third cheaper than _EventFields(...).
        ev = _new_event(_EventFields)
        ev.id = _ids.prefix + str(next(_ids.counter))
        ev.type = event_type  # type: ignore[assignment]
        ev.data = data
        ev.timestamp = _time()
        ev.source = source
        ev.metadata = md
        ev.scope = self._scope
        ev.parent_id = parent_id
        ev.seq = -1
        ev.correlation_id = correlation_id
        ev.origin = None
        ev.__class__ = Event
        return self._emit(ev, route, depth, propagate, True)  # type: ignore[arg-type]

    def publish_event(self, event: Event[Any], *, propagate: bool = True) -> str:
        """Publish a prebuilt :class:`Event` (e.g. from :meth:`Event.create`).

        The bus records a copy carrying its own ``seq`` (and this bus's
        scope path if the event has none); the id, timestamp, causation and
        correlation of ``event`` are kept.

        Raises:
            TypeError: ``event`` is not an :class:`Event`.
            BusClosedError, PayloadTypeError, MiddlewareError,
            RecursionDepthError: as for :meth:`publish`.
        """
        if not isinstance(event, Event):
            raise TypeError(f"publish_event() takes an Event, got {type(event).__name__}")
        event = in_context(event)  # joins the correlate() block / causal chain it is published in
        if self._closed:
            raise BusClosedError(self.name)
        self._check_payload(event.type, event.data)
        ctx = _CONTEXT.get()
        depth = 0 if ctx is None else ctx[1]
        if depth >= self.max_depth:
            raise RecursionDepthError(depth + 1, self.max_depth, event.type)
        if not event.scope and self._scope:
            event = copy_event(event, event.seq, scope=self._scope)
        return self._emit(event, self._route_for(event.type), depth, propagate, False)

    def _emit(
        self,
        ev: Event[Any],
        route: tuple[Entry, ...],
        depth: int,
        propagate: bool,
        fresh: bool,
    ) -> str:
        """Middleware, record, sinks, dispatch, forward: the shared core."""
        mws = self._middleware
        if mws:
            for mw in mws:
                try:
                    res = mw(ev)
                except Exception as exc:
                    raise MiddlewareError(mw, ev.id, exc) from exc
                if res is ev:
                    continue
                if res is None:
                    with self._lock:
                        self._dropped += 1
                    return ev.id
                if not isinstance(res, Event):
                    raise InvalidMiddlewareResultError(mw, ev.id, res)
                if res.type is not ev.type:
                    route = self._route_for(res.type)
                ev = res
                fresh = False  # not built here: the middleware may hold it, so copy

        cid = ev.correlation_id
        events = self._events
        lock = self._lock
        lock.acquire()
        try:
            seq = self._seq = self._seq + 1
            if fresh and ev.seq == -1:
                _set_seq(ev, seq)
            else:
                ev = copy_event(ev, seq)
            # A full history evicts its oldest event: this local keeps it (and
            # its payload) alive until the lock is left, so a finalizer never
            # runs under it (see _release); costs one comparison.
            evicted = events[0] if len(events) == events.maxlen and events else None
            events.append(ev)
            if cid is not None:
                history = self._history
                if history.max_runs and history.run_limit:
                    history._record_run(cid, ev)
            self._delivered += len(route)
            sinks = self._sinks
            if sinks:
                for sink in sinks:
                    sink.push(ev)
        finally:
            lock.release()
        if evicted is not None:
            evicted = None  # its finalizer (if this was the last reference) runs here
        if _kept and not self._lock_owned():  # sinks' evictions: dropped now (see _release)
            release_kept()

        errors: list[HandlerError] | None = None
        if route:
            token = _CONTEXT.set((ev.id, depth + 1, cid))
            try:
                for fn, ref in route:
                    try:
                        if ref is None:
                            res = fn(ev)
                        else:
                            obj = ref()
                            if obj is None:
                                self._count_skip()
                                continue
                            res = fn(obj, ev)
                        if res is not None:  # an awaitable is scheduled, never dropped
                            handler_returned(self, ev, fn, ref, res)
                    except Exception as exc:
                        errors = self._handler_failed(ev, fn, ref, exc, depth, errors)
            finally:
                _CONTEXT.reset(token)

        parent = self._parent
        if parent is not None and propagate and not parent._closed:
            # Forward: the same event, through the parent's own middleware,
            # history (its own seq) and handlers, and on up the chain.
            up = parent._routes.get(id(ev.type))
            parent._emit(ev, parent._route_for(ev.type) if up is None else up, depth, True, False)
        if self._blocking_sinks:
            for sink in self._blocking_sinks:
                sink.wait_for_room()
        if errors:
            raise ExceptionGroup(f"{len(errors)} handler(s) failed on event {ev.id}", errors)
        return ev.id

    # --------------------------------------------------------- handler errors

    def _handler_failed(
        self,
        ev: Event[Any],
        fn: Callable[..., Any],
        ref: Any,
        exc: Exception,
        depth: int,
        errors: list[HandlerError] | None,
    ) -> list[HandlerError] | None:
        name = entry_name(fn, ref)
        with self._lock:
            self._handler_errors += 1
        if self.raise_handler_errors:
            err = HandlerError(ev.id, name, exc)
            err.__cause__ = exc
            return [*(errors or ()), err]
        self._report(ev, name, exc, depth, is_async=False)
        return errors

    def _report_handler_error(
        self, ev: Event[Any], name: str, exc: Exception, *, is_async: bool
    ) -> None:
        """Report a failed async handler (called on its loop)."""
        with self._lock:
            self._handler_errors += 1
            self._async_errors += 1
        ctx = _CONTEXT.get()
        self._report(ev, name, exc, 0 if ctx is None else ctx[1], is_async=is_async)

    def _report(
        self, ev: Event[Any], name: str, exc: Exception, depth: int, *, is_async: bool
    ) -> None:
        if ev.type is _HANDLER_ERROR or self._closed:
            log.error(
                "handler %s failed on %s %s",
                name,
                ev.type_name,
                ev.id,
                exc_info=exc,
                extra=log_extra(ev, handler=name, bus=self.name),
            )
            return
        if not self._has_error_subscribers():
            log.error(
                "handler %s failed on %s %s (no HANDLER_ERROR subscriber)",
                name,
                ev.type_name,
                ev.id,
                exc_info=exc,
                extra=log_extra(ev, handler=name, bus=self.name),
            )
        failure = HandlerFailure(ev.id, ev.type, name, exc, is_async)
        err_ev = trusted_event(
            _ids.prefix + str(next(_ids.counter)),
            _HANDLER_ERROR,
            failure,
            _time(),
            "atlas_events",
            EMPTY_METADATA,
            self._scope,
            ev.id,
            -1,
            ev.correlation_id,
            None,
        )
        try:
            self._emit(err_ev, self._route_for(_HANDLER_ERROR), depth, True, True)
        except Exception:  # a middleware failed on the error report: log, never recurse
            log.exception(
                "could not publish HANDLER_ERROR for %s",
                ev.id,
                extra=log_extra(ev, handler=name, bus=self.name),
            )
        finally:
            _release_frames(exc)

    def _has_error_subscribers(self) -> bool:
        bus: EventBus | None = self
        while bus is not None:
            if bus._route_for(_HANDLER_ERROR):
                return True
            bus = bus._parent
        return False

    # ------------------------------------------------------------------ async

    async def publish_async(
        self,
        event_type: enum.Enum | EventKey[Any],
        data: Any = None,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        propagate: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the handlers, not this call
    ) -> str:
        """Publish, then await the async handlers of the event on this loop.

        Sync handlers run as in :meth:`publish`; coroutine handlers
        subscribed from the running loop are awaited concurrently. After
        ``timeout`` seconds the unfinished ones are cancelled and counted in
        ``stats()["async_handler_timeouts"]``. Handler errors are reported
        as ``HANDLER_ERROR``, never raised here.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Future[Any]] = []
        token = ASYNC_COLLECTOR.set((loop, tasks))
        try:
            event_id = self.publish(
                event_type,
                data,
                source=source,
                metadata=metadata,
                correlation_id=correlation_id,
                propagate=propagate,
            )
        finally:
            ASYNC_COLLECTOR.reset(token)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                for task in pending:
                    task.cancel()
                with self._lock:
                    self._async_timeouts += len(pending)
                await asyncio.wait(pending)
        return event_id

    def stream(
        self,
        event_type: enum.Enum | EventKey[Any] = ANY,
        *,
        filter: Callable[[Event[Any]], bool] | None = None,
        correlation_id: str | None = None,
        replay: Replay = False,
        since_seq: int | None = None,
        max_queue: int = 1000,
        policy: Policy = "drop_oldest",
        block_timeout: float = 1.0,
        name: str | None = None,
    ) -> EventStream:
        """Open an async stream of events with its own bounded queue.

        See :class:`atlas_events.EventStream` and ``docs/async.md``.
        """
        from ._streams import EventStream

        et = self._check_type(event_type, allow_any=True)
        return EventStream(
            self,
            et,
            filter=filter,
            correlation_id=correlation_id,
            replay=replay,
            since_seq=since_seq,
            max_queue=max_queue,
            policy=policy,
            block_timeout=block_timeout,
            name=name,
        )

    # ------------------------------------------------------------------ sinks

    def attach_sink(
        self, sink: Sink, *, replay_from: Callable[[History], list[Event[Any]]] | None = None
    ) -> tuple[Subscription, list[Event[Any]]]:
        """Attach ``sink`` (an async stream, a bridge outbox, your own consumer).

        Every event recorded after the attach is pushed to the sink, in
        ``seq`` order; events recorded before it are in the returned list (as
        selected by ``replay_from``, empty without it): never both, never
        neither. The returned :class:`Subscription` detaches the sink.

        Raises:
            BusClosedError: The bus is closed.
        """
        if self._closed:
            raise BusClosedError(self.name, "attach a stream")
        rec = _Registration(sink, self._detach_sink)
        with self._wlock, self._lock:
            if self._closed:  # again: close() may have run since the check above
                raise BusClosedError(self.name, "attach a stream")
            self._sink_records.append(rec)
            self._sinks = tuple(r.item for r in self._sink_records)
            self._blocking_sinks = tuple(s for s in self._sinks if s.blocks)
            replay = replay_from(self._history) if replay_from is not None else []
        return Subscription(rec, f"{sink.kind} sink"), replay

    def _detach_sink(self, rec: _Registration[Sink]) -> bool:
        return self._unregister(rec, self._unlink_sink_locked)

    def _unlink_sink_locked(self, rec: _Registration[Sink]) -> None:
        with self._lock:
            if rec in self._sink_records:
                self._sink_records.remove(rec)
                self._sinks = tuple(r.item for r in self._sink_records)
                self._blocking_sinks = tuple(s for s in self._sinks if s.blocks)

    # ---------------------------------------------------------------- history

    @overload
    def history(
        self,
        event_type: EventKey[T],
        *,
        source: str | None = None,
        since: float | None = None,
        since_seq: int | None = None,
        scope: tuple[str, ...] | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event[T]]: ...

    @overload
    def history(
        self,
        event_type: enum.Enum | None = None,
        *,
        source: str | None = None,
        since: float | None = None,
        since_seq: int | None = None,
        scope: tuple[str, ...] | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event[Any]]: ...

    def history(
        self,
        event_type: enum.Enum | EventKey[Any] | None = None,
        *,
        source: str | None = None,
        since: float | None = None,
        since_seq: int | None = None,
        scope: tuple[str, ...] | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event[Any]]:
        """Recorded events, oldest first, optionally filtered.

        Args:
            event_type: Only this type (``None`` or ``ANY`` for all). With an
                :class:`EventKey` the result is typed ``list[Event[T]]``
                (sound when the key is declared on the bus, see
                :meth:`declare`, or every publish goes through the key).
            source: Only events with this ``source``.
            since: Only events with ``timestamp >= since`` (epoch seconds).
            since_seq: Only events with ``seq > since_seq``.
            scope: Only events whose scope path starts with this tuple.
            correlation_id: Only this run's events, from the per-run history
                (which may reach further back than the main history).
            limit: Keep only the newest ``limit`` matches.
        """
        et = None if event_type is None else self._check_type(event_type, allow_any=True)
        with self._lock:
            events = self._history.events(correlation_id)
        return select(
            events, et, source=source, since=since, since_seq=since_seq, scope=scope, limit=limit
        )

    def clear_history(self) -> None:
        """Forget every recorded event (``seq`` keeps counting)."""
        with self._lock:
            self._history.clear()
        if not self._lock_owned():
            release_kept()  # the forgotten events' finalizers run outside the lock

    @property
    def history_limit(self) -> int:
        return self._history.limit

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the most recently recorded event (0 before any)."""
        return self._seq

    # ------------------------------------------------------------------ scopes

    def scope(self, name: str, **options: Any) -> ScopedEventBus:
        """Create a child :class:`ScopedEventBus` named ``name``."""
        from ._scoped import ScopedEventBus

        return ScopedEventBus(self, name, **options)

    def _adopt(self, child: EventBus) -> None:
        node: EventBus | None = self
        while node is not None:
            if node is child:
                raise ScopeError(f"{child.name!r} cannot become its own ancestor")
            node = node._parent
        with self._wlock:  # close() lists the children to close under this lock
            if self._closed:
                raise BusClosedError(self.name, "create a scope")
            self._children.add(child)

    # ------------------------------------------------------------------ stats

    def subscriber_count(self, event_type: enum.Enum | EventKey[Any] | None = None) -> int:
        """Active subscriptions for ``event_type`` (all types if ``None``)."""
        self._purge_dead()
        et = None if event_type is None else self._check_type(event_type, allow_any=True)
        with self._rlock:
            sigs = self._signals.values() if et is None else [self._signals.get(id(et))]
            return sum(1 for s in sigs for r in _receivers_of(s) if r.active)

    def stats(self) -> BusStats:
        """A snapshot of the bus's counters; cheap and safe from any thread."""
        self._purge_dead()
        with self._rlock:
            subscribers = {
                _type_label(self._members[k]): n
                for k, s in self._signals.items()
                if (n := sum(1 for r in _receivers_of(s) if r.active))
            }
            sink_stats = [s.stats() for s in self._sinks]
            middleware = len(self._middleware)
            children = len(self._children)
        with self._lock:
            delivered = self._delivered - self._skipped
            streams = [s for s in sink_stats if s.get("kind") == "stream"]
            return {
                "name": self.name,
                "scope": self._scope,
                "closed": self._closed,
                "published": self._seq,
                "delivered": delivered,
                "dropped_by_middleware": self._dropped,
                "handler_errors": self._handler_errors,
                "async_handler_errors": self._async_errors,
                "async_handler_timeouts": self._async_timeouts,
                "handler_timeouts": self._policy_counters.timeouts,
                "slow_handlers": self._policy_counters.slow,
                "handlers_removed": self._policy_counters.removed,
                "async_handlers_loop_closed": self._loop_closed_unsubscribed,
                "subscribers": subscribers,
                "middleware": middleware,
                "history_size": len(self._history),
                "history_limit": self._history.limit,
                "runs_retained": self._history.runs_retained,
                "runs_evicted": self._history.evicted_runs,
                "streams": len(streams),
                "stream_events_dropped": sum(s.get("dropped", 0) for s in streams),
                "sinks": sink_stats,
                "children": children,
            }

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Close the bus: end streams, close child scopes, drop subscriptions.

        Publishing or subscribing afterwards raises :class:`BusClosedError`.
        Publishes already in progress in other threads complete. Idempotent.
        """
        with self._wlock:
            if self._closed:
                return
            self._closed = True
            children = list(self._children)
        for child in children:
            child.close()
        self._waits.end_all(self.name)
        with self._wlock:
            for sig in self._signals.values():
                for rec in _receivers_of(sig):
                    rec.retire()
                    sig.disconnect(rec)
            self._routes.clear()
            for mrec in self._mw_records:
                mrec.active = False
            self._mw_records.clear()
            self._middleware = ()
            with self._lock:
                sinks = self._sinks
                for srec in self._sink_records:
                    srec.active = False
                self._sink_records.clear()
                self._sinks = ()
                self._blocking_sinks = ()
        for sink in sinks:
            sink.close()
        if self._parent is not None:
            self._parent._children.discard(self)

    def __enter__(self) -> EventBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
            InvalidEventTypeError, InvalidHandlerError, TypeError,
            ValueError: Bad arguments (raised by the call).
        """
        return _waiting.wait_for(self, self._waits, event_type, where=where, timeout=timeout)

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
        return _waiting.wait_for_sync(self, self._waits, event_type, where=where, timeout=timeout)

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
        return _registration.on(self, event_type, subscribe_options)

    def off(self, event_type: enum.Enum | EventKey[Any], handler: Callable[..., Any]) -> int:
        """Unsubscribe every subscription of ``handler`` to ``event_type``; return how many."""
        return _registration.off(self, event_type, handler)

    def subscribe_component(self, component: object) -> Subscription:
        """Subscribe every method of ``component`` marked with :func:`handles`; one token.

        See :func:`atlas_events.handles`.
        """
        return _registration.subscribe_component(self, component)

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
        return wrap_subscription(self, event_type, handler, weak, policy, self._handler_wrappers)

    def _add_handler_wrapper(self, wrapper: HandlerWrapper) -> Subscription:
        """Wrap every handler subscribed from now on (package-internal: instrumentation)."""
        rec = _Registration(wrapper, self._remove_handler_wrapper)
        with self._wlock:
            if self._closed:
                raise BusClosedError(self.name, "instrument")
            self._handler_wrappers = (*self._handler_wrappers, wrapper)
        return Subscription(rec, f"handler wrapper {callable_name(wrapper)}")

    def _remove_handler_wrapper(self, rec: _Registration[HandlerWrapper]) -> bool:
        return self._unregister(rec, self._unlink_handler_wrapper_locked)

    def _unlink_handler_wrapper_locked(self, rec: _Registration[HandlerWrapper]) -> None:
        self._handler_wrappers = tuple(w for w in self._handler_wrappers if w is not rec.item)


def _release_frames(exc: BaseException) -> None:
    """Stop a reported exception, kept in a ``HANDLER_ERROR`` event, from pinning objects.

    The event outlives the dispatch (history, stream queues). Through its
    traceback the exception would keep the failed dispatch's whole stack
    alive -- every frame's locals, the failed handler's ``self``, and the
    weakly subscribed component the dispatch loop touched last, which then
    never dies -- since a finished frame holds on to its caller's frame.
    ``HANDLER_ERROR`` subscribers (and the log) saw the traceback; afterwards
    the bus drops it, and those of the exceptions chained to it that were
    raised and caught inside the handler. An exception that code still
    running is handling (a publish from an ``except`` block) is left alone.
    """
    running = set()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        running.add(frame)
        frame = frame.f_back
    exc.__traceback__ = None
    seen = {id(exc)}
    todo: list[BaseException | None] = [exc.__cause__, exc.__context__]
    if isinstance(exc, BaseExceptionGroup):
        todo.extend(exc.exceptions)
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None and tb.tb_frame not in running:
            tb = tb.tb_next
        if tb is not None:  # still being handled by a running frame: not ours
            continue
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)


def _qualname(cls: object) -> str:
    return str(getattr(cls, "__qualname__", cls))


def _order_of(rec: Receiver) -> int:
    return rec.order


def _receivers_of(sig: blinker.Signal | None) -> list[Receiver]:
    """The receiver records connected to ``sig`` (all of them are ours)."""
    if sig is None:
        return []
    return cast("list[Receiver]", list(sig.receivers.values()))


def _checked_metadata(source: object, metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Check ``publish``'s ``source``; return ``metadata`` as a read-only copy."""
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be a str or None, got {type(source).__name__}")
    if metadata is None:
        return EMPTY_METADATA
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return MappingProxyType(dict(metadata)) if metadata else EMPTY_METADATA

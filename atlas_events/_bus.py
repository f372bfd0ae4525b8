"""The event bus facade: ``EventBus`` and ``ScopedEventBus`` over the core modules.

Each public method checks its arguments and hands the work to one module:
:mod:`._registry` (subscriptions, routes), :mod:`._chain` (middleware),
:mod:`._recorder` (seq, history, sinks, counters), :mod:`._dispatch` (the
publish loop) and :mod:`._scoped` (the scope tree). See docs/architecture.md.
"""

from __future__ import annotations

import enum
import functools
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload

from ._bus_async import StreamsAndSinks
from ._bus_ecosystem import Ecosystem
from ._bus_policies import Policies
from ._bus_queries import Queries
from ._bus_subscribe import Subscriptions
from ._chain import run_middleware
from ._checks import check_bool
from ._context import (
    COLLECTOR,
    context_get,
    correlate,
    current_correlation_id,
    read_context,
)
from ._dispatch import (
    emit,
    enqueue,
    nested,
    prepare,
    replaced,
    report_async_failure,
    resume,
)
from ._event import EMPTY_METADATA, Event, EventKey, _EventFields, copy_event, in_context
from ._history import History
from ._ids import _SOURCE
from ._locks import Deferred
from ._options import BusOptions
from ._policies import PolicyCounters
from ._recorder import Sink
from ._registry import Registry
from ._scoped import Nested, Node, close_tree
from ._validate import check_event, checked_metadata
from ._waiting import Waits
from .exceptions import (
    BusClosedError,
    MiddlewareError,
    RecursionDepthError,
    ScopeError,
)

if TYPE_CHECKING:
    from ._wrappers import HandlerWrapper

__all__ = ["EventBus", "ScopedEventBus", "Sink", "correlate", "current_correlation_id"]

T = TypeVar("T")

_time = time.time
_new_event = object.__new__
COLLECTOR.bind(globals())  # context_get: see _context.Collector
partial = functools.partial
_ids = _SOURCE
_take_id: Callable[[], str] = _SOURCE.take  # typed here; bind() keeps it current
_SOURCE.bind(globals())  # _take_id refuses while a fork is under way (see _ids)


class EventBus(Subscriptions, Policies, StreamsAndSinks, Queries, Ecosystem):
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
        nested: What a publish made by a handler does. ``"queued"`` (the
            default): the nested event is recorded and delivered once the
            current event has been delivered everywhere, so every handler
            sees events in ``seq`` order. ``"immediate"``: it is recorded and
            delivered at once, depth-first, before the remaining handlers of
            the current event run.

    Raises:
        TypeError, ValueError: An option is of the wrong type or out of
            range (the message names it).

    Publishing is thread-safe and lock-light: the bus takes its recording
    lock only to give the event its ``seq`` and append it to history, and
    calls handlers *outside* every lock, so handlers may publish, subscribe,
    unsubscribe or add middleware on the same bus.
    """

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
        nested: Nested = "queued",
    ) -> None:
        opts = BusOptions(
            history_limit,
            run_history_limit,
            max_runs,
            max_depth,
            raise_handler_errors,
            name,
            tuple(terminal_types) if isinstance(terminal_types, list) else terminal_types,
            nested,
        )
        self._setup(opts, None, ())

    def _setup(self, opts: BusOptions, parent: EventBus | None, path: tuple[str, ...]) -> None:
        deferred = Deferred()
        self._options = opts
        registry = Registry(
            opts.name, deferred, self._count_skip, self._async_failed, self._count_loop_closed
        )
        node = Node(
            name=opts.name,
            parent=None if parent is None else parent._node,
            path=path,
            history=History(opts.history_limit, opts.run_history_limit, opts.max_runs),
            max_depth=opts.max_depth,
            raise_handler_errors=opts.raise_handler_errors,
            terminal_types=opts.terminal_types,
            nested=opts.nested,
            registry=registry,
            deferred=deferred,
        )
        # Instance attributes, not class attributes, so the loads in publish
        # are specialised (saves ~77 ns per publish; docs/performance.md "Core split: hot path").
        self._node: Node = node
        self._registry = registry
        self._wlock = registry.locks.write
        self._routes = registry.routes
        self._declared = node.tree.declared
        self._declared_by_id = node.tree.declared.by_id
        self._chain = node.chain
        self._recorder = node.recorder
        self._parent = parent
        self._scope = path
        self._closed = False
        node.mark_closed = weakref.WeakMethod(self._mark_closed)
        self.max_depth = opts.max_depth
        self.raise_handler_errors = opts.raise_handler_errors
        self.name = opts.name
        self.terminal_types: frozenset[enum.Enum] = node.terminal_types
        self.terminal_ids: frozenset[int] = node.terminal_ids
        self._handler_wrappers: tuple[HandlerWrapper, ...] = ()  # see _add_handler_wrapper
        self._waits = Waits()  # wait_for calls in progress, ended by close()
        self._policy_counters = PolicyCounters()

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

    @property
    def nested(self) -> Nested:
        """How nested publishes are delivered: ``"queued"`` or ``"immediate"``."""
        return self._node.nested

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self.name!r}{state} seq={self._recorder.seq}>"

    def _mark_closed(self) -> None:
        self._closed = True
        self._waits.end_all(self.name)  # no user code: wakes the waiters only

    def _count_loop_closed(self) -> None:
        """A receiver unsubscribed itself because its event loop closed."""
        self._recorder.count("loop_closed")

    def _count_skip(self) -> None:
        self._recorder.count("skipped")
        self._registry.purge()

    def _async_failed(self, event: Event[Any], name: str, exc: Exception) -> None:
        report_async_failure(self._node, event, name, exc)

    def _must_defer(self) -> bool:
        """Whether this thread holds a lock of this bus (code run by the GC in a locked section)."""
        return self._registry.must_defer() or self._recorder.lock.held_here()

    def _defer(self, work: Callable[[], object]) -> None:
        self._node.deferred.add(work)

    # ---------------------------------------------------------------- publish

    @overload
    def publish(
        self,
        event_type: EventKey[T],
        # The Callable member is a typing device, never a valid payload: mypy
        # infers T from the key first, so a wrong payload is an [arg-type]
        # error naming the expected class (tests/typing/test_typing.py).
        data: T | Callable[[T], NoReturn],
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
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        propagate: bool = True,
    ) -> str: ...

    def publish(
        self,
        event_type: enum.Enum | EventKey[Any],
        data: Any = None,
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
        run and a ``HANDLER_ERROR`` event reports it. Pass the options after
        ``data`` by keyword.

        Raises:
            InvalidEventTypeError: ``event_type`` is not an enum member.
            PayloadTypeError: ``data`` does not match a declared payload class.
            MiddlewareError: A middleware raised or returned a non-event.
            RecursionDepthError: Handlers nested publishes beyond ``max_depth``.
            BusClosedError: The bus is closed.
        """
        # The hot path (docs/performance.md "Hot path, round 4"): rare cases
        # (bad input, declared payloads, metadata, scopes, errors) branch off to
        # helpers; the common case reads each attribute once. Options are
        # positional-or-keyword so the call is specialised (saves a kwargs dict).
        if self._closed:
            raise BusClosedError(self.name)
        # Keyed by identity: a plain value equal to a str- or int-valued member,
        # an unhashable object or a member of another enum with the same value
        # finds no route here and is validated (and refused, or routed) by _resolve.
        route = self._routes.get(id(event_type))
        if route is None:
            event_type, route = self._resolve(event_type, data)
        elif self._declared_by_id:  # a dict: truth-tested without a Python call
            self._check_payload(event_type, data)  # type: ignore[arg-type]
        ctx = context_get()  # guarded while the collector runs (see _context.Collector)
        if ctx is None:
            parent_id = queue = None
            depth = 0
        else:  # published by a handler (or in a correlate() block)
            parent_id, depth, correlation_id, queue = nested(
                ctx, correlation_id, self.max_depth, event_type
            )
        if source is None and metadata is None:
            md: Mapping[str, Any] = EMPTY_METADATA
        else:
            md = checked_metadata(source, metadata)
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise TypeError(
                f"correlation_id must be a str or None, got {type(correlation_id).__name__}"
            )
        # Built slot by slot on the mutable layout, then frozen by a class
        # swap: no __init__ frame (docs/performance.md "Core split: hot path").
        ev: Any = _new_event(_EventFields)
        # Hi/lo ids: one list.pop() per id saves ~880 instructions per publish
        # against formatting a counter (docs/performance.md "Ids, hi/lo (round 6)").
        try:
            eid = _take_id()
        except IndexError:  # the block is used up (once per 1,000 ids), or a fork is under way
            eid = _ids.refill()
        ev.id = eid
        ev.type = event_type
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
        node = self._node
        # The middleware loop, inlined (saves a call per publish; same section).
        for mw in self._chain.here:
            try:
                res = mw(ev)
            except Exception as exc:
                raise MiddlewareError(mw, eid, exc) from exc
            if res is not ev:
                changed = replaced(node, mw, ev, res, route)
                if changed is None:  # dropped
                    return eid
                ev, route = changed
                eid = ev.id  # a middleware may return another event (Event.create)
                correlation_id = ev.correlation_id
        # Every level's middleware runs before any level records (see prepare),
        # and before queuing: a failing ancestor middleware raises here.
        plan = prepare(node, ev, propagate) if self._recorder.forwards else None
        if queue is not None:
            if enqueue(queue, partial(resume, node, ev, route, depth, queue, propagate, plan)):
                return eid  # queued mode: delivered after the current event
            queue = None  # a copied context's closed or foreign queue: outermost here
        return emit(node, ev, eid, route, depth, queue, correlation_id, plan, route or plan)

    def publish_event(self, event: Event[Any], *, propagate: bool = True) -> str:
        """Publish a prebuilt :class:`Event` (e.g. from :meth:`Event.create`).

        The bus records a copy carrying its own ``seq`` (and this bus's
        scope path if the event has none); the id, timestamp, causation and
        correlation of ``event`` are kept. Inside a :func:`correlate` block an
        event without a correlation id takes the block's.

        Raises:
            TypeError, ValueError: ``event`` is not a valid :class:`Event`
                (a field of the wrong type, a timestamp that is not finite...),
                checked before anything is recorded.
            BusClosedError, PayloadTypeError, MiddlewareError,
            RecursionDepthError: as for :meth:`publish`.
        """
        check_event(event)
        check_bool("propagate", propagate)
        if self._closed:
            raise BusClosedError(self.name)
        self._check_payload(event.type, event.data)
        ctx = read_context()
        depth = 0 if ctx is None else ctx[1]
        if depth >= self.max_depth:
            raise RecursionDepthError(depth + 1, self.max_depth, event.type)
        event = in_context(event)  # joins the correlate() block / causal chain it is published in
        if not event.scope and self._scope:
            event = copy_event(event, event.seq, scope=self._scope)
        node = self._node
        chain = node.chain
        ev = run_middleware(chain.here, chain.here_counters, event, chain.count_drop)
        if ev is None:
            return event.id
        ev = copy_event(ev, -1)  # the bus's own copy: its seq is set when recorded
        route = self._registry.route_for(ev.type)
        queue = None if ctx is None else ctx[3]
        plan = prepare(node, ev, propagate)  # before queuing, as in publish
        if queue is not None:
            if enqueue(queue, partial(resume, node, ev, route, depth, queue, propagate, plan)):
                return ev.id  # queued mode: delivered after the current event
            queue = None  # a copied context's closed or foreign queue: outermost here
        return emit(node, ev, ev.id, route, depth, queue, ev.correlation_id, plan, route or plan)

    # ------------------------------------------------------------------ scopes

    def scope(self, name: str, **options: Any) -> ScopedEventBus:
        """Create a child :class:`ScopedEventBus` named ``name``."""
        return ScopedEventBus(self, name, **options)

    def _adopt(self, child: EventBus) -> None:
        """Link ``child`` (a new scope) below this bus; it inherits this bus's policies.

        Raises:
            ScopeError: ``child`` is this bus or one of its ancestors.
            BusClosedError: This bus is closed.
        """
        node = self._node
        if child._node is node or child._node in node.ancestors():
            raise ScopeError(f"{child.name!r} cannot become its own ancestor")
        with node.tree.lock:  # close() lists the scopes to close under this lock
            if self._closed or node.closed:
                raise BusClosedError(self.name, "create a scope")
            node.children.add(child._node)
            child._chain.set_inherited(self._chain.inheritable())

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Close the bus: end streams, close child scopes, drop subscriptions.

        Publishing or subscribing afterwards raises :class:`BusClosedError`.
        Publishes already in progress in other threads complete. Idempotent.
        Every scope below is closed too (without recursion, at any depth); a
        sink that fails to close does not stop the others, and its error is
        raised (as an ``ExceptionGroup``) once everything is closed.
        """
        if self._must_defer():
            self._defer(self.close)
            return
        close_tree(self._node)

    def __enter__(self) -> EventBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ScopedEventBus(EventBus):
    """A child bus: a full :class:`EventBus` that forwards its events upward.

    An event published on a scoped bus is delivered to the scope's own
    subscribers, then forwarded to the parent, and so on up to the root.
    Upstream it is the *same event* (same id); every level runs its own
    middleware, records its own history (with its own ``seq``) and calls its
    own subscribers. ``event.scope`` names the path, e.g.
    ``("agents", "planner")`` for ``root.scope("agents").scope("planner")``,
    so a parent's subscriber can tell where an event came from. Middleware
    a parent added with ``inherit=True`` runs first, where the event is
    published (see :meth:`EventBus.add_middleware`).

    ``publish(..., propagate=False)`` keeps an event in its scope. Closing a
    scope stops forwarding, disposes its subscriptions and closes its own
    child scopes; closing the parent closes its scopes.

    Args:
        parent: The bus to forward to.
        scope_name: This scope's name (non-empty, no ``"/"``).
        **options: :class:`EventBus` options (``history_limit``...); by
            default a scope shares its parent's ``max_depth``,
            ``raise_handler_errors``, ``nested`` and terminal types.

    Raises:
        ScopeError: The name is empty or has a ``"/"``.
        BusClosedError: ``parent`` is closed.
    """

    def __init__(self, parent: EventBus, scope_name: str, **options: Any) -> None:
        if not isinstance(parent, EventBus):
            raise TypeError(f"parent must be an EventBus, got {type(parent).__name__}")
        if not isinstance(scope_name, str) or not scope_name or "/" in scope_name:
            raise ScopeError(f"scope name must be a non-empty str without '/', got {scope_name!r}")
        path = (*parent.scope_path, scope_name)
        options.setdefault("max_depth", parent.max_depth)
        options.setdefault("raise_handler_errors", parent.raise_handler_errors)
        options.setdefault("terminal_types", tuple(parent.terminal_types))
        options.setdefault("name", "/".join(path))
        options.setdefault("nested", parent.nested)
        self._setup(BusOptions(**options), parent, path)
        self.scope_name = scope_name
        parent._adopt(self)

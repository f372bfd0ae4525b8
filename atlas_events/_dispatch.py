"""The publish loop: middleware, record, dispatch to handlers, forward up the scope tree.

Plain functions over :class:`~atlas_events._scoped.Node` (pluggy's
``_multicall`` is the model): :func:`emit` records an event that has
passed the publishing bus's middleware (under the recording lock), calls
the handlers (outside every lock) and has :func:`forward` deliver it at
each ancestor in turn, iteratively, so scope chains of any depth cost no
recursion. :meth:`EventBus.publish`, :meth:`EventBus.publish_event` and
the queued or deferred deliveries (:func:`resume`) all go through it.

Nested publishes (a handler publishing) are *queued* by default: the nested
event is recorded and delivered after the current event has been delivered
everywhere, so every handler sees events in ``seq`` order. A bus created
with ``nested="immediate"`` delivers them depth-first instead.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, NoReturn, cast

from ._chain import checked_result, owner_counter, run_middleware
from ._context import (
    COLLECTOR,
    AnyToken,
    Context,
    context_reset,
    context_set,
    read_context,
)
from ._errors import release_frames
from ._event import _SEQ_SET as _set_seq
from ._event import EMPTY_METADATA, Event, EventType, copy_event, trusted_event
from ._ids import new_id
from ._logging import log_extra
from ._receivers import CHECK_RESULT, entry_name, handler_returned
from ._recorder import push
from ._registry import Route
from ._release import KEPT as _KEPT
from ._release import release_kept
from ._scoped import Node
from ._stats import HandlerFailure
from .exceptions import (
    HandlerError,
    InvalidMiddlewareResultError,
    MiddlewareError,
    RecursionDepthError,
)

__all__ = [
    "NO_QUEUE",
    "emit",
    "enqueue",
    "nested",
    "finish",
    "handler_failed",
    "prepare",
    "raise_errors",
    "replaced",
    "report_async_failure",
    "resume",
]

log = logging.getLogger("atlas_events")

_time = time.time
_get_ident = threading.get_ident
COLLECTOR.bind(globals())  # context_set/context_reset: see _context.Collector
_HANDLER_ERROR: Final = EventType.HANDLER_ERROR

Queue = list[Any]
"""The queue of nested publishes of one thread's outermost dispatch (queued mode).

``queue[0]`` is the owning thread's ident (0 once drained); the rest are
calls waiting to be made, in order.
"""


NO_QUEUE: Final[Queue] = [0]
"""The stand-in for "owns no queue": always closed (0), never appended to."""


Plan = list[tuple[Node, Event[Any]]]
"""Where a published event goes after its own bus: each ancestor and the event it records."""


def emit(
    node: Node,
    ev: Event[Any],
    eid: str,
    route: Route,
    depth: int,
    queue: Queue | None,
    correlation_id: str | None,
    plan: Plan | None,
    handled: object,
) -> str:
    """Record, dispatch and forward ``ev`` (id ``eid``), published on ``node``; return ``eid``.

    ``handled`` is true when some level may have handlers (``route or
    plan``, tested by the caller).

    ``ev`` has passed ``node``'s middleware and is the bus's own copy
    (``seq`` still -1): it is recorded in place. ``plan`` (from
    :func:`prepare`, run by the caller before anything is recorded) says
    where it goes next. The outermost dispatch of a thread on a queued bus
    owns the queue of nested publishes: the context carries it from before
    recording until it is drained, so a finalizer the collector runs in
    between is delivered after ``ev``. The hot path (docs/performance.md
    "Hot path, round 4"): recording and the handler loop are inlined --
    the same steps as :func:`record`, which serves forwarded deliveries.

    Raises:
        ExceptionGroup: Handlers failed and the bus re-raises handler errors.
    """
    rec = node.recorder
    mine = NO_QUEUE
    if handled:
        if queue is None and node.queued:  # this thread's outermost dispatch
            queue = mine = [_get_ident()]
        ctx: Context = (eid, depth + 1, correlation_id, queue)
        token: AnyToken | None = context_set(ctx)
        here: Context | None = ctx
    else:
        token = here = None
    errors: list[HandlerError] | None = None
    try:
        lock = rec.lock
        raw = lock.raw
        # A busy test, then a blocking acquire() that parses no arguments:
        # saves ~330 instructions against acquire(False) (same section).
        if lock.busy:  # held, or a query waits: the counted waiter path
            if lock.wait_acquire():  # re-entered: a finalizer run inside the section published
                node.deferred.add(
                    functools.partial(resume, node, ev, route, depth, None, False, plan)
                )
                return eid
        else:
            raw.acquire()
        lock.busy = True
        try:
            seq = rec.seq = rec.seq + 1
            _set_seq(ev, seq)
            events = rec.events
            # Held until unlocked (an evicted payload's finalizer may publish);
            # held whether or not the append evicts it: cheaper than a len test.
            evicted: object = events[0] if events else None
            events.append(ev)
            if correlation_id is not None:
                evicted = (evicted, rec.history.record_run(correlation_id, ev))
            rec.delivered += len(route)
            if rec.sinks:  # no call when there is none (the common case)
                push(rec.sinks, ev)
        finally:
            lock.busy = lock.queries  # not held; truthy while a query waits (see RecordingLock)
            raw.release()
        # The handler loop, inlined: saves a frame per publish (same section).
        for fn, ref in route:
            try:
                if ref is None:  # returns nothing (_returns): its result is not looked at
                    fn(ev)
                    continue
                if ref is CHECK_RESULT:  # a strong handler that may return an awaitable
                    res = fn(ev)
                else:
                    obj = ref()
                    if obj is None:
                        node.registry.count_skip()
                        continue
                    res = fn(obj, ev)
                if res is not None:  # an awaitable is scheduled, never dropped
                    handler_returned(node.registry, ev, fn, ref, res)
            except Exception as exc:
                errors = handler_failed(node, ev, entry_name(fn, ref), exc, depth, errors)
        del evicted  # released after the handlers: a finalizer's publish follows ev
        # rec.more: forwarding, blocking sinks or collected handler errors.
        if len(mine) > 1 or rec.more or rec.deferred:
            finish(node, eid, depth, queue, mine, plan, errors, here)
    finally:
        mine[0] = 0  # closed, so a copied context never queues on it (see drain)
        if token is not None:
            context_reset(token)
    if _KEPT:  # what sinks evicted under the lock (see _release)
        release_kept()
    return eid


def nested(
    ctx: Context, correlation_id: str | None, max_depth: int, event_type: object
) -> tuple[str | None, int, str | None, Queue | None]:
    """``(parent id, depth, correlation id, queue)`` of a publish made inside ``ctx``.

    The publish's own ``correlation_id`` wins over the context's.

    Raises:
        RecursionDepthError: The publish would nest deeper than ``max_depth``.
    """
    parent_id, depth, cid, queue = ctx
    if depth >= max_depth:
        raise RecursionDepthError(depth + 1, max_depth, event_type)
    return parent_id, depth, cid if correlation_id is None else correlation_id, queue


def replaced(
    node: Node, mw: Any, ev: Event[Any], res: object, route: Route
) -> tuple[Event[Any], Route] | None:
    """A middleware returned ``res``, not ``ev``: ``None`` if dropped (counted), else the new event.

    Raises:
        InvalidMiddlewareResultError: ``res`` is neither ``None`` nor an event.
    """
    chain = node.chain
    if res is None:
        (owner_counter(chain.here, chain.here_counters, mw) or chain.count_drop)()
        return None
    if not isinstance(res, Event):
        raise InvalidMiddlewareResultError(mw, ev.id, res)
    if res.type is not ev.type:
        route = node.registry.route_for(res.type)
    # The bus's own copy (the middleware may keep ``res``); its seq is set when recorded.
    return copy_event(res, -1), route


def enqueue(queue: Queue, call: Callable[[], object]) -> bool:
    """Queue ``call`` behind the current event if ``queue`` is this thread's live queue.

    Returns ``False`` (and queues nothing) for a closed queue or another
    thread's: a copied context (an asyncio task, a thread) publishes as the
    outermost dispatch of its own thread instead.
    """
    if queue[0] != _get_ident():
        return False
    queue.append(call)
    return True


def finish(
    node: Node,
    eid: str,
    depth: int,
    queue: Queue | None,
    mine: Queue,
    plan: Plan | None,
    errors: list[HandlerError] | None,
    here: Context | None,
) -> None:
    """After the handlers: forward, wait for blocking sinks, drain the queue, raise errors.

    ``mine`` is the queue this dispatch owns (:data:`NO_QUEUE` if none): it
    is drained, then closed. ``here`` is the dispatch context the caller
    has set (see :func:`forward`).

    Raises:
        ExceptionGroup: Handlers failed and the bus re-raises handler errors.
    """
    if plan:
        errors = forward(plan, depth, queue, errors, here)
    if node.recorder.blocking_sinks:  # no iterator when there is none
        for sink in node.recorder.blocking_sinks:
            sink.wait_for_room()
    if len(mine) > 1:
        errors = drain(mine, errors)
    else:
        mine[0] = 0  # closed (see drain)
    if node.recorder.deferred:  # work left by finalizers that ran in the locked section
        run_deferred(node)
    if errors:
        if _KEPT:  # released before raising (the caller's release is skipped)
            release_kept()
        raise_errors(eid, errors)


def raise_errors(ev_id: str, errors: list[HandlerError]) -> NoReturn:
    """Raise the handler errors of one publish (``raise_handler_errors=True``).

    Raises:
        ExceptionGroup: Always, of the :class:`HandlerError` in ``errors``.
    """
    raise ExceptionGroup(f"{len(errors)} handler(s) failed on event {ev_id}", errors)


def record(node: Node, ev: Event[Any], route: Route) -> tuple[Event[Any], object] | None:
    """Give a copy of ``ev`` this bus's next ``seq``, keep it in history, push it to the sinks.

    Returns the recorded copy and what history evicted for it (drop that
    after the handlers ran: a payload's finalizer may publish), or ``None``
    when this thread already holds the recording lock (a finalizer run
    inside the locked section published): the caller then defers with
    :func:`resume`.
    """
    rec = node.recorder
    lock = rec.lock
    raw = lock.raw
    if lock.busy:  # held, or a query waits: the counted waiter path (see RecordingLock)
        if lock.wait_acquire():  # re-entered: a finalizer run inside the section published
            return None
    else:
        raw.acquire()
    lock.busy = True
    try:
        rec.seq += 1
        ev = copy_event(ev, rec.seq)
        events = rec.events
        evicted: object = events[0] if events else None  # held either way: cheaper than a len test
        events.append(ev)
        if ev.correlation_id is not None:
            evicted = (evicted, rec.history.record_run(ev.correlation_id, ev))
        rec.delivered += len(route)
        if rec.sinks:  # no call when there is none
            push(rec.sinks, ev)
    finally:
        lock.busy = lock.queries  # not held; truthy while a query waits (see RecordingLock)
        raw.release()
    return ev, evicted


def resume(
    node: Node,
    ev: Event[Any],
    route: Route,
    depth: int,
    queue: Queue | None,
    propagate: bool,
    plan: Plan | None = None,
) -> None:
    """Record, dispatch and forward ``ev`` on ``node``, its middleware done (queued or deferred).

    ``ev`` is the bus's own, unrecorded copy (``seq`` -1). With no live
    queue (deferred work, an async handler's failure) this delivery is the
    outermost one of its thread and queues nested publishes itself.

    Raises:
        ExceptionGroup: Handlers failed and the bus re-raises handler errors.
    """
    if plan is None:
        plan = prepare(node, ev, propagate)
    emit(node, ev, ev.id, route, depth, queue, ev.correlation_id, plan, route or plan)


def run_deferred(node: Node) -> None:
    """Run work finalizers left on ``node``, unless this thread still holds one of its locks."""
    if not node.recorder.lock.held_here() and not node.registry.must_defer():
        node.deferred.run()


def prepare(node: Node, ev: Event[Any], propagate: bool) -> Plan | None:
    """Run each ancestor's own (not inherited) middleware on ``ev``, before anything is recorded.

    So a middleware error raised anywhere up the chain leaves the event
    recorded nowhere. Stops at a closed ancestor or at a drop.

    Raises:
        MiddlewareError: An ancestor's middleware raised or returned a non-event.
    """
    if not propagate:
        return None
    plan: Plan = []
    level = node.parent
    while level is not None and not level.closed:
        chain = level.chain
        mws = chain.forwarded
        # run_middleware(), inlined: saves a frame per level (docs/performance.md "Hot path").
        for mw in mws:
            try:
                res = mw(ev)
            except Exception as exc:
                raise MiddlewareError(mw, ev.id, exc) from exc
            if res is not ev:
                res = checked_result(mws, chain.forwarded_counters, mw, ev, res, chain.count_drop)
                if res is None:
                    return plan  # dropped: the levels above do not see it
                ev = res
        plan.append((level, ev))
        level = level.parent
    return plan


def forward(
    plan: Plan,
    depth: int,
    queue: Queue | None,
    errors: list[HandlerError] | None,
    here: Context | None = None,
) -> list[HandlerError] | None:
    """Record and dispatch the event at each ancestor of ``plan`` in turn.

    ``here`` is the dispatch context the caller has set, if any: a level
    whose event has the same id and correlation (no middleware replaced
    it) is dispatched in it as is, saving a context set and reset per level
    (~2,900 instructions; docs/performance.md "Hot path, round 4").
    """
    for level, planned in plan:
        if level.closed:
            break
        # Identity-checked lookup first: saves route_for's frame per level
        # (docs/performance.md "Hot path").
        route = level.registry.routes.get(id(planned.type))
        if route is None:
            route = level.registry.route_for(planned.type)
        done = record(level, planned, route)
        if done is None:  # this thread holds that level's lock: finish later
            rest = plan[plan.index((level, planned)) + 1 :]
            own = copy_event(planned, -1)  # planned may be recorded below: resume records in place
            level.deferred.add(
                functools.partial(resume, level, own, route, depth, None, True, rest)
            )
            break
        ev, evicted = done
        del done
        if route:
            # The handler loop, inlined: saves a frame per level (docs/performance.md "Hot path").
            if here is not None and ev.id is here[0] and ev.correlation_id is here[2]:
                token = None  # the caller's context is this event's
            else:
                token = context_set((ev.id, depth + 1, ev.correlation_id, queue))
            try:
                for fn, ref in route:
                    try:
                        if ref is None:  # returns nothing (_returns)
                            fn(ev)
                            continue
                        if ref is CHECK_RESULT:  # may return an awaitable
                            res = fn(ev)
                        else:
                            obj = ref()
                            if obj is None:
                                level.registry.count_skip()
                                continue
                            res = fn(obj, ev)
                        if res is not None:  # an awaitable is scheduled, never dropped
                            handler_returned(level.registry, ev, fn, ref, res)
                    except Exception as exc:
                        name = entry_name(fn, ref)
                        errors = handler_failed(level, ev, name, exc, depth, errors)
            finally:
                if token is not None:
                    context_reset(token)
        del evicted  # finalizers run here, after that level's handlers
        if level.recorder.deferred:
            run_deferred(level)
        if level.recorder.blocking_sinks:  # no iterator when there is none
            for sink in level.recorder.blocking_sinks:
                sink.wait_for_room()
    return errors


def drain(queue: Queue, errors: list[HandlerError] | None) -> list[HandlerError] | None:
    """Deliver the nested publishes queued during this thread's outermost dispatch, in order."""
    try:
        i = 1
        while i < len(queue):
            call = queue[i]
            queue[i] = None  # release as we go
            i += 1
            try:
                call()
            except ExceptionGroup as group:
                errors = [*(errors or ()), *cast("tuple[HandlerError, ...]", group.exceptions)]
    finally:
        queue[0] = 0  # closed: a copied context (an async task) publishes immediately
    return errors


# ------------------------------------------------------------------ handler errors


def handler_failed(
    node: Node,
    ev: Event[Any],
    name: str,
    exc: Exception,
    depth: int,
    errors: list[HandlerError] | None,
) -> list[HandlerError] | None:
    """Count a failed handler; collect it (``raise_handler_errors``) or report it."""
    node.recorder.count("handler_errors")
    if node.raise_handler_errors:
        err = HandlerError(ev.id, name, exc)
        err.__cause__ = exc
        return [*(errors or ()), err]
    report(node, ev, name, exc, depth, is_async=False)
    return errors


def report_async_failure(node: Node, ev: Event[Any], name: str, exc: Exception) -> None:
    """Report a failed async handler (called on its loop)."""
    node.recorder.count("handler_errors")
    node.recorder.count("async_errors")
    ctx = read_context()
    report(node, ev, name, exc, 0 if ctx is None else ctx[1], is_async=True)


def report(
    node: Node, ev: Event[Any], name: str, exc: Exception, depth: int, *, is_async: bool
) -> None:
    """Publish ``HANDLER_ERROR`` for a failure (or log it if that is impossible)."""
    if ev.type is _HANDLER_ERROR or node.closed:
        log.error(
            "handler %s failed on %s %s",
            name,
            ev.type_name,
            ev.id,
            exc_info=exc,
            extra=log_extra(ev, handler=name, bus=node.name),
        )
        return
    if not any(n.registry.route_for(_HANDLER_ERROR) for n in (node, *node.ancestors())):
        log.error(
            "handler %s failed on %s %s (no HANDLER_ERROR subscriber)",
            name,
            ev.type_name,
            ev.id,
            exc_info=exc,
            extra=log_extra(ev, handler=name, bus=node.name),
        )
    failure = HandlerFailure(ev.id, ev.type, name, exc, is_async)
    err_ev = trusted_event(
        new_id(),
        _HANDLER_ERROR,
        failure,
        _time(),
        "atlas_events",
        EMPTY_METADATA,
        node.path,
        ev.id,
        -1,
        ev.correlation_id,
        None,
    )
    ctx = read_context()
    queue = None if ctx is None else ctx[3]
    if queue is None or not enqueue(
        queue, functools.partial(_publish_failure, node, err_ev, depth, queue, exc)
    ):  # no live queue here (none, a closed or another thread's): this delivery is outermost
        _publish_failure(node, err_ev, depth, None, exc)


def _publish_failure(
    node: Node, err_ev: Event[Any], depth: int, queue: Queue | None, exc: Exception
) -> None:
    try:
        chain = node.chain
        ev2 = run_middleware(chain.here, chain.here_counters, err_ev, chain.count_drop)
        if ev2 is not None:
            route = node.registry.route_for(ev2.type)
            resume(node, ev2, route, depth, queue, True)
    except Exception:  # a middleware failed on the error report: log, never recurse
        log.exception(
            "could not publish HANDLER_ERROR for %s",
            err_ev.parent_id,
            extra=log_extra(err_ev, bus=node.name),
        )
    finally:
        release_frames(exc)

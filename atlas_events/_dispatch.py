"""The publish loop: middleware, record, dispatch to handlers, forward up the scope tree.

Plain functions over :class:`~atlas_events._scoped.Node` (pluggy's
``_multicall`` is the model): :func:`emit` runs the publishing bus's
middleware, :func:`deliver` records the event (under the recording lock),
calls the handlers (outside every lock) and forwards it to each ancestor in
turn, iteratively, so scope chains of any depth cost no recursion.

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
from typing import Any, Final, cast

from ._chain import owner_counter
from ._context import CONTEXT
from ._errors import release_frames
from ._event import _SEQ_SET as _set_seq
from ._event import EMPTY_METADATA, Event, EventType, copy_event, trusted_event
from ._ids import _SOURCE as _ids
from ._receivers import entry_name
from ._registry import Route
from ._scoped import Node
from ._stats import HandlerFailure
from .exceptions import HandlerError, InvalidMiddlewareResultError, MiddlewareError

__all__ = ["deliver", "emit", "report_async_failure"]

log = logging.getLogger("atlas_events")

_time = time.time
_get_ident = threading.get_ident
_HANDLER_ERROR: Final = EventType.HANDLER_ERROR

Queue = list[Any]
"""The queue of nested publishes of one thread's outermost dispatch (queued mode).

``queue[0]`` is the owning thread's ident (0 once drained); the rest are
calls waiting to be made, in order.
"""


def emit(
    node: Node,
    ev: Event[Any],
    route: Route,
    depth: int,
    queue: Queue | None,
    propagate: bool,
    fresh: bool,
    now: bool = False,
) -> str:
    """Run ``node``'s middleware on ``ev``, then :func:`deliver` it (or drop it)."""
    chain = node.chain
    mws = chain.here
    if mws:
        res = run_middleware(mws, chain.here_counters, ev, node.chain.count_drop)
        if res is None:
            return ev.id
        if res is not ev:
            if res.type is not ev.type:
                route = node.registry.route_for(res.type)
            ev = res
            fresh = False  # not built here: the middleware may hold it, so copy
    return deliver(node, ev, route, depth, queue, propagate, fresh, now)


def run_middleware(
    mws: tuple[Callable[[Event[Any]], Event[Any] | None], ...],
    counters: tuple[Callable[[], None], ...],
    ev: Event[Any],
    fallback: Callable[[], None],
) -> Event[Any] | None:
    """Pass ``ev`` through ``mws``; ``None`` if one dropped it (counted for its bus).

    Raises:
        MiddlewareError: A middleware raised.
        InvalidMiddlewareResultError: A middleware returned a non-event.
    """
    for mw in mws:
        try:
            res = mw(ev)
        except Exception as exc:
            raise MiddlewareError(mw, ev.id, exc) from exc
        if res is ev:
            continue
        if res is None:
            (owner_counter(mws, counters, mw) or fallback)()
            return None
        if not isinstance(res, Event):
            raise InvalidMiddlewareResultError(mw, ev.id, res)
        ev = res
    return ev


def deliver(
    node: Node,
    ev: Event[Any],
    route: Route,
    depth: int,
    queue: Queue | None,
    propagate: bool,
    fresh: bool,
    now: bool = False,
) -> str:
    """Record ``ev`` on ``node``, call its handlers, forward it upward; return its id.

    In queued mode, inside a dispatch running on this thread, only queue it
    (unless ``now``: the queue itself is being drained).

    Raises:
        ExceptionGroup: Handlers failed and the bus re-raises handler errors.
    """
    if queue is not None and not now and node.nested == "queued" and queue[0] == _get_ident():
        queue.append(
            functools.partial(deliver, node, ev, route, depth, queue, propagate, fresh, True)
        )
        return ev.id
    mine = None
    if route and node.nested == "queued" and queue is None:
        queue = mine = [_get_ident()]
    recorded = record(node, ev, route, fresh, depth, queue, propagate)
    if recorded is None:  # a finalizer inside this thread's locked section: deferred
        return ev.id
    errors = dispatch(node, recorded, route, depth, queue) if route else None
    if node.parent is not None and propagate:
        errors = forward(node, recorded, depth, queue, errors)
    for sink in node.recorder.blocking_sinks:
        sink.wait_for_room()
    if mine is not None:
        errors = drain(mine, errors)
    if errors:
        raise ExceptionGroup(f"{len(errors)} handler(s) failed on event {ev.id}", errors)
    return ev.id


def record(
    node: Node,
    ev: Event[Any],
    route: Route,
    fresh: bool,
    depth: int,
    queue: Queue | None,
    propagate: bool,
) -> Event[Any] | None:
    """Give ``ev`` this bus's next ``seq``, keep it in history, push it to the sinks.

    Returns the recorded event (a copy unless it was built for this bus), or
    ``None`` when this thread already holds the recording lock (a finalizer
    run inside the locked section published): the delivery is then
    deferred until the lock is released.
    """
    rec = node.recorder
    lock = rec.lock
    if not lock.raw.acquire(False) and not lock.wait():
        node.deferred.add(
            functools.partial(deliver, node, ev, route, depth, None, propagate, fresh)
        )
        return None
    lock.owner = _get_ident()
    try:
        seq = rec.seq = rec.seq + 1
        if fresh and ev.seq == -1:
            _set_seq(ev, seq)
        else:
            ev = copy_event(ev, seq)
        events = rec.events
        # Held until unlocked: an evicted payload's finalizer may publish.
        evicted: object = events[0] if len(events) == rec.full else None
        events.append(ev)
        cid = ev.correlation_id
        if cid is not None and rec.history.keeps_runs:
            evicted = (evicted, rec.history.record_run(cid, ev))
        rec.delivered += len(route)
        for sink in rec.sinks:
            sink.push(ev)
    finally:
        lock.owner = 0
        lock.raw.release()
    if evicted is not None:
        del evicted  # finalizers run here, unlocked
    if rec.deferred:
        run_deferred(node)
    return ev


def run_deferred(node: Node) -> None:
    """Run work finalizers left on ``node``, unless this thread still holds one of its locks."""
    if not node.recorder.lock.held_here() and not node.registry.must_defer():
        node.deferred.run()


def dispatch(
    node: Node, ev: Event[Any], route: Route, depth: int, queue: Queue | None
) -> list[HandlerError] | None:
    """Call each handler of ``route`` with ``ev``, outside every lock."""
    errors: list[HandlerError] | None = None
    token = CONTEXT.set((ev.id, depth + 1, ev.correlation_id, queue))
    try:
        for fn, ref in route:
            try:
                if ref is None:
                    fn(ev)
                else:
                    obj = ref()
                    if obj is None:
                        node.registry.count_skip()
                        continue
                    fn(obj, ev)
            except Exception as exc:
                errors = handler_failed(node, ev, entry_name(fn, ref), exc, depth, errors)
    finally:
        CONTEXT.reset(token)
    return errors


def forward(
    node: Node,
    ev: Event[Any],
    depth: int,
    queue: Queue | None,
    errors: list[HandlerError] | None,
) -> list[HandlerError] | None:
    """Deliver ``ev`` at each ancestor in turn: its own middleware, history and handlers."""
    level = node.parent
    while level is not None and not level.closed:
        chain = level.chain
        mws = chain.forwarded
        if mws:
            res = run_middleware(mws, chain.forwarded_counters, ev, chain.count_drop)
            if res is None:
                break
            ev = res
        route = level.registry.route_for(ev.type)
        recorded = record(level, ev, route, False, depth, queue, True)
        if recorded is None:
            break  # deferred: that level's delivery (not forwarded further) runs later
        ev = recorded
        if route:
            more = dispatch(level, ev, route, depth, queue)
            if more:
                errors = [*(errors or ()), *more]
        for sink in level.recorder.blocking_sinks:
            sink.wait_for_room()
        level = level.parent
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
    ctx = CONTEXT.get()
    report(node, ev, name, exc, 0 if ctx is None else ctx[1], is_async=True)


def report(
    node: Node, ev: Event[Any], name: str, exc: Exception, depth: int, *, is_async: bool
) -> None:
    """Publish ``HANDLER_ERROR`` for a failure (or log it if that is impossible)."""
    if ev.type is _HANDLER_ERROR or node.closed:
        log.error("handler %s failed on %s %s", name, ev.type_name, ev.id, exc_info=exc)
        return
    if not any(n.registry.route_for(_HANDLER_ERROR) for n in (node, *node.ancestors())):
        log.error(
            "handler %s failed on %s %s (no HANDLER_ERROR subscriber)",
            name,
            ev.type_name,
            ev.id,
            exc_info=exc,
        )
    failure = HandlerFailure(ev.id, ev.type, name, exc, is_async)
    err_ev = trusted_event(
        _ids.prefix + str(next(_ids.counter)),
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
    ctx = CONTEXT.get()
    queue = None if ctx is None else ctx[3]
    if queue is not None and node.nested == "queued" and queue[0] == _get_ident():
        queue.append(functools.partial(_publish_failure, node, err_ev, depth, queue, exc))
    else:
        _publish_failure(node, err_ev, depth, queue, exc)


def _publish_failure(
    node: Node, err_ev: Event[Any], depth: int, queue: Queue | None, exc: Exception
) -> None:
    try:
        route = node.registry.route_for(_HANDLER_ERROR)
        emit(node, err_ev, route, depth, queue, True, True, True)
    except Exception:  # a middleware failed on the error report: log, never recurse
        log.exception("could not publish HANDLER_ERROR for %s", err_ev.parent_id)
    finally:
        release_frames(exc)

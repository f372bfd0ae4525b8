"""The dispatch context: causation, nesting depth and correlation of the running code."""

from __future__ import annotations

import contextlib
import contextvars
import gc
import threading
from collections.abc import Iterator
from typing import Any

__all__ = [
    "CONTEXT",
    "Context",
    "correlate",
    "current_correlation_id",
    "COLLECTOR",
    "enter_context",
    "get_context",
    "read_context",
    "reset_context",
    "set_context",
]

Context = tuple[str | None, int, str | None, list[Any] | None]
"""``(parent event id, dispatch depth, correlation id, dispatch queue)``.

The queue is the :class:`~atlas_events._dispatch.Pending` of the outermost
dispatch running on this thread (``None`` in a correlation block).
"""

# One context variable serves causation, recursion depth, correlation and the
# queued-dispatch mode, so publish reads one (saves 3 ContextVar.get calls;
# docs/performance.md "Core split: hot path").
CONTEXT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "atlas_events_context", default=None
)

# Bound once. On 3.11 ``CONTEXT.get()`` on an imported name compiles to an
# attribute load plus a call, which builds (and frees) a bound-method object
# per call: ~150 instructions each, three per publish (docs/performance.md
# "Hot path, round 4").
get_context = CONTEXT.get
set_context = CONTEXT.set
reset_context = CONTEXT.reset

_get_ident = threading.get_ident


class Collector:
    """Which thread the cyclic garbage collector is running in (``thread``; 0 if none).

    Code the collector runs (a finalizer) can interrupt ``ContextVar.set``,
    ``reset`` or ``get`` of the same context half-way, at an allocation. On
    CPython 3.10-3.11 (python/cpython#148891, open) a finalizer that then
    sets a context variable frees the mapping the interrupted call is still
    walking, and one that reads it can leave a stale cached value behind a
    ``reset`` (a later ``get`` returns a freed object): both crash the
    interpreter. So a publish made from such a finalizer neither sets nor
    reads the dispatch context the usual way (:func:`enter_context`,
    :func:`read_context`); ``gc.callbacks`` keeps this record.
    """

    __slots__ = ("thread",)

    def __init__(self) -> None:
        self.thread = 0

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        self.thread = _get_ident() if phase == "start" else 0


COLLECTOR = Collector()
gc.callbacks.append(COLLECTOR)


def read_context() -> Context | None:
    """The dispatch context; from code the collector runs, read from a snapshot.

    A snapshot (``contextvars.copy_context()``) holds its own reference to
    the context's mapping and never fills the variable's cache, so an
    interrupted ``reset`` cannot leave a stale value behind (see
    :class:`Collector`).
    """
    if COLLECTOR.thread and COLLECTOR.thread == _get_ident():
        return contextvars.copy_context().get(CONTEXT)
    return get_context()


def enter_context(value: Context) -> contextvars.Token[Context | None] | None:
    """Set the dispatch context to ``value``; ``None`` (nothing set) inside a collection.

    Inside a collection run by this thread (a finalizer publishing) the
    context is left as it is, so the publish cannot re-enter
    ``ContextVar.set`` (see :class:`Collector`): that event's handlers then
    run in the interrupted code's context.
    """
    if COLLECTOR.thread and COLLECTOR.thread == _get_ident():
        return None
    return set_context(value)


def current_correlation_id() -> str | None:
    """The correlation id that a publish here would carry, if any."""
    ctx = read_context()
    return None if ctx is None else ctx[2]


@contextlib.contextmanager
def correlate(correlation_id: str) -> Iterator[str]:
    """Make every event published or created inside the block carry ``correlation_id``.

    Covers :meth:`EventBus.publish`, :meth:`Event.create` and
    :meth:`EventBus.publish_event` (an event without a correlation id is
    tagged when it is published inside the block). Works across buses;
    threads started inside the block do *not* inherit it (contextvars),
    asyncio tasks created inside do.

    Raises:
        ValueError: ``correlation_id`` is not a non-empty str.
    """
    if not isinstance(correlation_id, str) or not correlation_id:
        raise ValueError(f"correlation_id must be a non-empty str, got {correlation_id!r}")
    ctx = read_context()
    token = CONTEXT.set(
        (None, 0, correlation_id, None) if ctx is None else (ctx[0], ctx[1], correlation_id, ctx[3])
    )
    try:
        yield correlation_id
    finally:
        CONTEXT.reset(token)

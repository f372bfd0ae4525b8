"""The dispatch context: causation, nesting depth and correlation of the running code."""

from __future__ import annotations

import contextlib
import contextvars
import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, cast

__all__ = [
    "CONTEXT",
    "Context",
    "correlate",
    "current_correlation_id",
    "COLLECTOR",
    "AnyToken",
    "Collected",
    "context_get",
    "context_reset",
    "context_set",
    "enter_context",
    "exit_context",
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


class Collected:
    """A dispatch-context change made inside a collection: the value it replaced."""

    __slots__ = ("previous",)

    def __init__(self, previous: object) -> None:
        self.previous = previous


AnyToken = contextvars.Token[Context | None] | Collected
"""What :func:`enter_context` returns and :func:`exit_context` takes."""

_UNSET: Final = object()


class Collector:
    """The cyclic garbage collector's run: its thread (``thread``, 0 if none) and context.

    Code the collector runs (a finalizer) can interrupt ``ContextVar.set``,
    ``reset`` or ``get`` of the same context half-way, at an allocation. On
    CPython 3.10-3.11 (python/cpython#148891, open) a finalizer that then
    sets a context variable frees the mapping the interrupted call is still
    walking, and one that reads it can leave a stale cached value behind a
    ``reset`` (a later ``get`` returns a freed object): both crash the
    interpreter. So while the collector runs on a thread, publishes made
    there keep their dispatch context in :attr:`context` instead of the
    context variable (:func:`enter_context`, :func:`read_context`), which
    they read from a snapshot; ``gc.callbacks`` keeps this record, and the
    context is forgotten when the collection starts and ends. The tasks of
    async handlers of such events are given it (``_receivers``); tasks a
    handler creates itself get the context variable's value, i.e. the
    context of the code the collection interrupted.

    The publish loop's modules call the dispatch context through three
    names they register with :meth:`bind` (``context_get``,
    ``context_set``, ``context_reset``): the context variable's own methods
    outside a collection, the guarded functions while one runs (on any
    thread; they tell the collecting thread apart). Switching the names
    twice per collection, instead of testing :attr:`thread` on every
    publish, saves ~300 instructions per publish (docs/performance.md
    "Hot path, round 5").
    """

    __slots__ = ("context", "direct", "guarded", "ident", "namespaces", "thread")

    def __init__(self) -> None:
        self.thread = 0
        self.context: object = _UNSET
        self.namespaces: list[dict[str, Any]] = []
        # Kept here, not looked up in this module's globals when called: the
        # hook stays in gc.callbacks until the very end, and at exit the
        # interpreter sets the globals of a module still alive to None.
        self.direct = _DIRECT
        self.guarded = _GUARDED
        self.ident = _get_ident

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        start = phase == "start"
        self.thread = self.ident() if start else 0
        self.context = _UNSET
        accessors = self.guarded if start else self.direct
        for namespace in self.namespaces:
            namespace.update(accessors)

    def bind(self, namespace: dict[str, Any]) -> None:
        """Keep ``context_get``/``context_set``/``context_reset`` in ``namespace`` current.

        ``namespace`` is a module's ``globals()``; its three names are set
        now and switched at the start and end of every collection.
        """
        namespace.update(self.guarded if self.thread else self.direct)
        self.namespaces.append(namespace)

    def here(self) -> bool:
        """Whether the collector is running on this thread."""
        return self.thread != 0 and self.thread == _get_ident()


def read_context() -> Context | None:
    """The dispatch context; inside a collection, the collection's own or a snapshot.

    A snapshot (``contextvars.copy_context()``) holds its own reference to
    the context's mapping and never fills the variable's cache, so an
    interrupted ``reset`` cannot leave a stale value behind (see
    :class:`Collector`).
    """
    if COLLECTOR.here():
        if COLLECTOR.context is not _UNSET:
            return cast("Context | None", COLLECTOR.context)
        return contextvars.copy_context().get(CONTEXT)
    return get_context()


def enter_context(value: Context) -> AnyToken:
    """Make ``value`` the dispatch context; undo with :func:`exit_context`.

    Inside a collection run by this thread the context variable is left
    alone (see :class:`Collector`).
    """
    if COLLECTOR.here():
        previous = COLLECTOR.context
        COLLECTOR.context = value
        return Collected(previous)
    return set_context(value)


def exit_context(token: AnyToken) -> None:
    """Undo :func:`enter_context` (``token`` is what it returned)."""
    if isinstance(token, Collected):
        COLLECTOR.context = token.previous
    else:
        reset_context(token)


_DIRECT: Final[dict[str, Any]] = {
    "context_get": get_context,
    "context_set": set_context,
    "context_reset": reset_context,
}
_GUARDED: Final[dict[str, Any]] = {
    "context_get": read_context,
    "context_set": enter_context,
    "context_reset": exit_context,
}

COLLECTOR = Collector()  # after the accessor tables it keeps

# The names a module registered with COLLECTOR.bind() calls; these bindings
# give them their types (the registered module's own copies are switched).
context_get: Callable[[], Context | None] = get_context
context_set: Callable[[Context], AnyToken] = set_context
context_reset: Callable[[Any], object] = reset_context

gc.callbacks.append(COLLECTOR)  # after the accessor tables it switches to


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
    token = enter_context(
        (None, 0, correlation_id, None) if ctx is None else (ctx[0], ctx[1], correlation_id, ctx[3])
    )
    try:
        yield correlation_id
    finally:
        exit_context(token)

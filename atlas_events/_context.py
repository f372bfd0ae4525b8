"""The dispatch context: causation, nesting depth and correlation of the running code."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["CONTEXT", "Context", "correlate", "current_correlation_id"]

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


def current_correlation_id() -> str | None:
    """The correlation id that a publish here would carry, if any."""
    ctx = CONTEXT.get()
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
    ctx = CONTEXT.get()
    token = CONTEXT.set(
        (None, 0, correlation_id, None) if ctx is None else (ctx[0], ctx[1], correlation_id, ctx[3])
    )
    try:
        yield correlation_id
    finally:
        CONTEXT.reset(token)

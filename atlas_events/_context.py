"""The dispatch context: causation, nesting depth and correlation of the code running now."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["CONTEXT", "correlate", "current_correlation_id"]

# (parent event id, dispatch depth, correlation id) of the dispatch or
# correlation block we are in; ``None`` at top level. One context variable
# serves causation, recursion depth and correlation, so publish reads one.
CONTEXT: contextvars.ContextVar[tuple[str | None, int, str | None] | None] = contextvars.ContextVar(
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
        ValueError: ``correlation_id`` is not a non-empty ``str``.
    """
    if not isinstance(correlation_id, str) or not correlation_id:
        raise ValueError(f"correlation_id must be a non-empty str, got {correlation_id!r}")
    ctx = CONTEXT.get()
    token = CONTEXT.set(
        (None, 0, correlation_id) if ctx is None else (ctx[0], ctx[1], correlation_id)
    )
    try:
        yield correlation_id
    finally:
        CONTEXT.reset(token)

"""Structured context for the library's log records (the ``extra`` of every log call)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["LOG_FIELDS", "log_extra"]

LOG_FIELDS: Final = (
    "atlas_bus",
    "atlas_event_id",
    "atlas_event_type",
    "atlas_scope",
    "atlas_correlation_id",
    "atlas_handler",
)
"""The attributes every ``atlas_events`` log record carries (``None`` when not applicable).

Prefixed so they never collide with :class:`logging.LogRecord`'s own
attributes or with a user's ``extra`` fields.
"""


def log_extra(
    event: Event[Any] | None = None,
    *,
    handler: str | None = None,
    bus: str | None = None,
) -> dict[str, Any]:
    """The ``extra`` mapping of a log call about ``event`` (and ``handler``, on ``bus``).

    Args:
        event: The event the record is about, if any.
        handler: The qualified name of the handler involved, if any.
        bus: The name of the bus involved, if any.

    Returns:
        A dict with every key of :data:`LOG_FIELDS`: the event's id, its type
        as ``Enum.MEMBER``, its scope path joined with ``"/"`` (``""`` at the
        root) and its correlation id.
    """
    if event is None:
        return dict.fromkeys(LOG_FIELDS[1:], None) | {"atlas_bus": bus, "atlas_handler": handler}
    return {
        "atlas_bus": bus,
        "atlas_event_id": event.id,
        "atlas_event_type": event.type_name,
        "atlas_scope": "/".join(event.scope),
        "atlas_correlation_id": event.correlation_id,
        "atlas_handler": handler,
    }

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
    **context: object,
) -> dict[str, Any]:
    """The ``extra`` mapping of a log call about ``event`` (and ``handler``, on ``bus``).

    Args:
        event: The event the record is about, if any.
        handler: The qualified name of the handler involved, if any.
        bus: The name of the bus involved, if any.
        **context: Further fields of one component's records (the bridges'
            ``atlas_node``, ``atlas_entry_id``...); each name starts with
            ``atlas_`` and is not one of :data:`LOG_FIELDS`.

    Returns:
        A dict with every key of :data:`LOG_FIELDS`: the event's id, its type
        as ``Enum.MEMBER``, its scope path joined with ``"/"`` (``""`` at the
        root) and its correlation id; then the ``context`` fields.

    Raises:
        ValueError: A ``context`` name lacks the ``atlas_`` prefix or is one
            of :data:`LOG_FIELDS`.
    """
    for name in context:
        if not name.startswith("atlas_") or name in LOG_FIELDS:
            raise ValueError(f"log context field {name!r}: use an atlas_ name not in LOG_FIELDS")
    if event is None:
        fields = dict.fromkeys(LOG_FIELDS[1:], None)
        return fields | {"atlas_bus": bus, "atlas_handler": handler} | context
    return {
        "atlas_bus": bus,
        "atlas_event_id": event.id,
        "atlas_event_type": event.type_name,
        "atlas_scope": "/".join(event.scope),
        "atlas_correlation_id": event.correlation_id,
        "atlas_handler": handler,
    } | context

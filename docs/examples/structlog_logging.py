"""Route atlas_events' log records through structlog as JSON, with their atlas_* fields."""

from __future__ import annotations

import logging
import sys

import structlog

from atlas_events import LOG_FIELDS, Event, EventBus, EventType

handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(
    structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.ExtraAdder(allow=LOG_FIELDS),  # the library's context fields
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )
)
lib_log = logging.getLogger("atlas_events")
lib_log.addHandler(handler)
lib_log.propagate = False

with EventBus(name="root") as bus:
    agents = bus.scope("agents")

    def broken(event: Event[None]) -> None:
        raise RuntimeError("model timed out")

    agents.subscribe(EventType.TASK_FAILED, broken)
    # No HANDLER_ERROR subscriber: the failure is logged, with the event's context.
    agents.publish(EventType.TASK_FAILED, correlation_id="run-42")

"""atlas-events: one typed, in-process event mesh for Python applications.

>>> from atlas_events import EventBus, EventType
>>> bus = EventBus()
>>> seen = []
>>> unsubscribe = bus.subscribe(EventType.STREAM_STARTED, lambda e: seen.append(e.data))
>>> _ = bus.publish(EventType.STREAM_STARTED, {"stream_id": "s1"})
>>> unsubscribe()
True
>>> seen
[{'stream_id': 's1'}]
"""

from __future__ import annotations

from ._build import compiled
from ._bus import EventBus, ScopedEventBus, Sink, correlate, current_correlation_id
from ._event import ANY, Event, EventKey, EventType, declare
from ._logging import LOG_FIELDS
from ._policies import HandlerRemoved
from ._registration import handles
from ._stats import BusStats, HandlerFailure, SinkStats
from ._streams import EventStream
from ._subscription import Subscription
from .exceptions import (
    AtlasEventsError,
    BusClosedError,
    HandlerError,
    HandlerTimeoutError,
    InvalidEventTypeError,
    InvalidHandlerError,
    InvalidOptionError,
    MiddlewareError,
    PayloadTypeError,
    RecursionDepthError,
    ScopeError,
)
from .middleware import Middleware

__all__ = [
    "ANY",
    "AtlasEventsError",
    "BusClosedError",
    "BusStats",
    "Event",
    "EventBus",
    "EventKey",
    "EventStream",
    "EventType",
    "HandlerError",
    "HandlerFailure",
    "HandlerRemoved",
    "HandlerTimeoutError",
    "InvalidEventTypeError",
    "InvalidHandlerError",
    "InvalidOptionError",
    "LOG_FIELDS",
    "Middleware",
    "MiddlewareError",
    "PayloadTypeError",
    "RecursionDepthError",
    "ScopeError",
    "ScopedEventBus",
    "Sink",
    "SinkStats",
    "Subscription",
    "__version__",
    "compiled",
    "correlate",
    "current_correlation_id",
    "declare",
    "handles",
]

__version__ = "0.1.0"

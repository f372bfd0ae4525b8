"""OpenTelemetry tracing for a bus: publish and handler spans, W3C trace context in metadata.

Needs the ``otel`` extra (``pip install 'atlas-events[otel]'``: the
OpenTelemetry API); your application installs and configures the SDK.
Spans follow the OpenTelemetry semantic conventions for messaging
(https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/):

* ``publish <type>`` (kind ``PRODUCER``, ``messaging.operation.type`` =
  ``send``) when an event is published on an instrumented bus. Its context
  is written into the event's metadata as the W3C ``traceparent`` (and
  ``tracestate``) headers, which a bridge carries to other processes.
* ``process <type>`` (kind ``CONSUMER``, ``messaging.operation.type`` =
  ``process``) around each handler call, a child of the context in the
  event's ``traceparent``: in another process too, so a trace continues
  across the Redis bridge. A handler that raises (or times out) marks its
  span as an error; events it publishes are children of its span.

Uninstrumented buses pay nothing: the publish span is a middleware and the
handler spans are wrappers built when a handler is subscribed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._event import Event
from ._registration import SubscriptionGroup
from ._subscription import Subscription

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._wrappers import Call, HandlerInfo

__all__ = ["MESSAGING_SYSTEM", "TRACEPARENT", "instrument"]

MESSAGING_SYSTEM: Final = "atlas_events"
"""The ``messaging.system`` attribute of every span."""
TRACEPARENT: Final = "traceparent"
"""The metadata key that carries the W3C trace context."""

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_SCOPE_NAME: Final = "atlas_events"


def _attributes(event: Event[Any], operation: str, kind: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.destination.name": event.type_name,
        "messaging.message.id": event.id,
        "atlas_events.scope": "/".join(event.scope),
    }
    if event.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = event.correlation_id
    return attributes


def _parent(metadata: Mapping[str, Any]) -> Any:
    """The context carried in ``metadata`` (``None``: use the current one)."""
    if TRACEPARENT not in metadata:
        return None
    return _PROPAGATOR.extract(metadata)


class _PublishSpans:
    """Middleware: a producer span per published event, its context put in the metadata."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def __call__(self, event: Event[Any]) -> Event[Any]:
        # Already carries a context: forwarded from an instrumented scope,
        # received from another process, or propagated by the caller.
        if TRACEPARENT in event.metadata or event.origin is not None:
            return event
        span = self._tracer.start_span(
            f"publish {event.type_name}",
            kind=trace.SpanKind.PRODUCER,
            attributes=_attributes(event, "publish", "send"),
        )
        try:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        finally:
            span.end()
        return attrs.evolve(event, metadata={**event.metadata, **carrier})


class _ProcessSpans:
    """Handler wrapper: a consumer span around each call of the handler.

    ``token`` is the token :func:`instrument` returned for this bus (the
    one a repeated call returns too).
    """

    __slots__ = ("_tracer", "token")

    def __init__(self, tracer: trace.Tracer, token: Subscription) -> None:
        self._tracer = tracer
        self.token = token

    def __call__(self, call: Call, info: HandlerInfo) -> Call:
        tracer = self._tracer
        handler = info.name

        def start(event: Event[Any]) -> Any:
            attributes = _attributes(event, "process", "process")
            attributes["atlas_events.handler"] = handler
            return tracer.start_as_current_span(
                f"process {event.type_name}",
                context=_parent(event.metadata),
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
            )

        if info.is_async:

            async def traced_async(target: Any, event: Event[Any]) -> Any:
                with start(event):
                    return await call(target, event)

            return traced_async

        def traced(target: Any, event: Event[Any]) -> Any:
            with start(event):
                return call(target, event)

        return traced


def instrument(
    bus: EventBus, *, tracer_provider: trace.TracerProvider | None = None
) -> Subscription:
    """Trace ``bus``: publish spans for its events, process spans for its handlers.

    Handler spans wrap handlers subscribed *after* this call (instrument
    before wiring the application). Instrument each bus whose handlers you
    want traced; an event published on a scope gets its publish span from
    the first instrumented bus it passes through and keeps that context on
    its way up.

    Idempotent: while ``bus`` is instrumented, calling this again changes
    nothing (no second publish span, no handler wrapped twice) and returns
    the token of the instrumentation in force, whose ``tracer_provider``
    stays. To switch providers, call that token first, then instrument again.

    Args:
        bus: The bus (or scope) to instrument.
        tracer_provider: Where spans go; default: the global provider.

    Returns:
        A token that removes the instrumentation (handlers already wrapped
        keep their spans until they are unsubscribed); the same token for
        every call while the instrumentation is in force.

    Raises:
        BusClosedError: The bus is closed.
    """
    tracer = trace.get_tracer(_SCOPE_NAME, tracer_provider=tracer_provider)
    parts: list[Subscription] = []
    token = Subscription(SubscriptionGroup(parts), f"OpenTelemetry on {bus.name}")
    # The wrapper goes first: the bus adds it atomically unless one is active.
    active, process = bus._add_handler_wrapper(_ProcessSpans(tracer, token))
    if process is None:
        return cast(_ProcessSpans, active).token
    try:
        parts.append(bus.add_middleware(_PublishSpans(tracer)))
    except BaseException:
        process()
        raise
    parts.append(process)
    return token

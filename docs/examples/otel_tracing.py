"""docs/integrations.md: OpenTelemetry spans for a bus (needs the otel extra and the SDK)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atlas_events import Event, EventBus, EventType
from atlas_events.otel import instrument

exporter = InMemorySpanExporter()  # in an application: an OTLP exporter
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

with EventBus(name="app") as bus:
    instrument(bus, tracer_provider=provider)  # before subscribing: handlers get spans

    def on_started(event: Event[Any]) -> None:
        bus.publish(EventType.TASK_COMPLETED, {"task": event.data["task"]})

    bus.subscribe(EventType.TASK_STARTED, on_started)
    bus.publish(EventType.TASK_STARTED, {"task": "t1"}, correlation_id="run-1")
    print("traceparent:", bus.history()[0].metadata["traceparent"])

for span in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0):
    parent = f"{span.parent.span_id:016x}" if span.parent else "-"
    print(f"{span.name:40} {span.kind.name:9} span={span.context.span_id:016x} parent={parent}")

"""The receiving process of the cross-process tracing test: ``python _otel_node.py URL NAMESPACE``.

An instrumented bus behind a RedisBridge; prints ``ready``, waits for one
TASK_COMPLETED from the other process, then prints its finished spans as one
JSON line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import RedisBridge
from atlas_events.otel import instrument


def main(url: str, namespace: str) -> int:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = EventBus(name="receiver")
    instrument(bus, tracer_provider=provider)
    seen: list[Event[Any]] = []
    bus.subscribe(EventType.TASK_COMPLETED, seen.append)
    with RedisBridge(bus, url, namespace, node_id="receiver"):
        print("ready", flush=True)
        bus.wait_for_sync(EventType.TASK_COMPLETED, where=lambda e: e.is_remote, timeout=60)
    spans = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "trace_id": s.context.trace_id,
            "parent_span_id": s.parent.span_id if s.parent else None,
            "parent_is_remote": s.parent.is_remote if s.parent else None,
            "attributes": dict(s.attributes or {}),
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"spans": spans, "data": [e.data for e in seen]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""OpenTelemetry: publish and handler spans, W3C trace context in metadata and across Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel test dependencies")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from atlas_events import Event, EventBus, EventType  # noqa: E402
from atlas_events.exceptions import BusClosedError  # noqa: E402
from atlas_events.otel import instrument  # noqa: E402

from .conftest import collect  # noqa: E402


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """An in-memory span exporter."""
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    """A tracer provider that exports every span to `exporter` synchronously."""
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


@pytest.fixture
def traced_bus(provider: TracerProvider) -> Iterator[EventBus]:
    """An instrumented root bus."""
    with EventBus(name="traced") as bus:
        instrument(bus, tracer_provider=provider)
        yield bus


def _spans(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


def _traceparent(span: ReadableSpan) -> str:
    ctx = span.context
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def test_publish_span_and_traceparent(traced_bus: EventBus, exporter: InMemorySpanExporter) -> None:
    """A publish makes a PRODUCER span; the event carries its W3C traceparent in metadata."""
    event_id = traced_bus.publish(EventType.TASK_STARTED, correlation_id="run-1")
    [span] = _spans(exporter, SpanKind.PRODUCER)
    assert span.name == "publish EventType.TASK_STARTED"
    attrs = dict(span.attributes or {})
    assert attrs["messaging.system"] == "atlas_events"
    assert attrs["messaging.operation.type"] == "send"
    assert attrs["messaging.destination.name"] == "EventType.TASK_STARTED"
    assert attrs["messaging.message.id"] == event_id
    assert attrs["messaging.message.conversation_id"] == "run-1"
    [recorded] = traced_bus.history()
    assert recorded.metadata["traceparent"] == _traceparent(span)


def test_handler_span_is_a_child_of_the_publish_span(
    traced_bus: EventBus, exporter: InMemorySpanExporter
) -> None:
    """Each handler call gets a CONSUMER span whose parent is the publish span."""

    def first(event: Event[Any]) -> None:
        pass

    def second(event: Event[Any]) -> None:
        pass

    traced_bus.subscribe(EventType.TASK_STARTED, first)
    traced_bus.subscribe(EventType.TASK_STARTED, second)
    traced_bus.publish(EventType.TASK_STARTED)
    [producer] = _spans(exporter, SpanKind.PRODUCER)
    consumers = _spans(exporter, SpanKind.CONSUMER)
    assert len(consumers) == 2
    for span in consumers:
        assert span.name == "process EventType.TASK_STARTED"
        assert span.context.trace_id == producer.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == producer.context.span_id
        assert dict(span.attributes or {})["messaging.operation.type"] == "process"
    handlers = sorted(str(dict(s.attributes or {})["atlas_events.handler"]) for s in consumers)
    assert handlers[0].endswith("first")
    assert handlers[1].endswith("second")


def test_failing_handler_span_is_an_error_and_nested_publish_is_a_child(
    traced_bus: EventBus, exporter: InMemorySpanExporter
) -> None:
    """A raising handler marks its span ERROR; an event it publishes is a child of its span."""
    errors: list[Event[Any]] = []
    traced_bus.subscribe(EventType.HANDLER_ERROR, errors.append)

    def fails(event: Event[Any]) -> None:
        traced_bus.publish(EventType.TASK_FAILED)
        raise ValueError("no")

    traced_bus.subscribe(EventType.TASK_STARTED, fails)
    traced_bus.publish(EventType.TASK_STARTED)
    assert len(errors) == 1
    [process] = [s for s in _spans(exporter, SpanKind.CONSUMER) if "TASK_STARTED" in s.name]
    assert process.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in process.events)
    [nested] = [s for s in _spans(exporter, SpanKind.PRODUCER) if "TASK_FAILED" in s.name]
    assert nested.parent is not None
    assert nested.parent.span_id == process.context.span_id


@pytest.mark.asyncio
async def test_async_handler_span_covers_the_await(
    traced_bus: EventBus, exporter: InMemorySpanExporter
) -> None:
    """An async handler's span lasts until its coroutine finishes."""

    async def slow(event: Event[Any]) -> None:
        await asyncio.sleep(0.02)

    traced_bus.subscribe(EventType.TASK_STARTED, slow)
    await traced_bus.publish_async(EventType.TASK_STARTED)
    [span] = _spans(exporter, SpanKind.CONSUMER)
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time - span.start_time >= 15_000_000  # ns


def test_instrumented_handler_stays_weak(traced_bus: EventBus) -> None:
    """The span wrapper does not pin a weakly held component."""

    class Component:
        def on(self, event: Event[Any]) -> None:
            pass

    c = Component()
    token = traced_bus.subscribe(EventType.TASK_STARTED, c.on)
    del c
    collect()
    traced_bus.publish(EventType.TASK_STARTED)
    assert not token.active


def test_uninstrument_stops_new_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The token instrument() returns removes the publish spans and the handler wrapping."""
    with EventBus() as bus:
        token = instrument(bus, tracer_provider=provider)
        assert token() is True
        bus.subscribe(EventType.TASK_STARTED, lambda e: None)
        bus.publish(EventType.TASK_STARTED)
        assert exporter.get_finished_spans() == ()
        assert bus.history()[0].metadata == {}


def test_instrument_twice_is_idempotent(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A second instrument() adds nothing (one span per publish and handler call), same token."""
    other = TracerProvider()
    other_exporter = InMemorySpanExporter()
    other.add_span_processor(SimpleSpanProcessor(other_exporter))
    with EventBus() as bus:
        token = instrument(bus, tracer_provider=provider)
        assert instrument(bus, tracer_provider=provider) is token
        assert instrument(bus, tracer_provider=other) is token
        bus.subscribe(EventType.TASK_STARTED, lambda e: None)
        bus.publish(EventType.TASK_STARTED)
        assert len(_spans(exporter, SpanKind.PRODUCER)) == 1
        assert len(_spans(exporter, SpanKind.CONSUMER)) == 1
        assert other_exporter.get_finished_spans() == ()
        # Once removed, the bus can be instrumented again, with another provider.
        assert token() is True
        again = instrument(bus, tracer_provider=other)
        assert again is not token
        assert again.active
        bus.subscribe(EventType.TASK_STARTED, lambda e: None)
        bus.publish(EventType.TASK_STARTED)
    assert len(_spans(other_exporter, SpanKind.PRODUCER)) == 1
    assert len(_spans(other_exporter, SpanKind.CONSUMER)) == 1  # only the handler subscribed after
    # The first handler keeps its wrapper (and provider) until unsubscribed.
    assert len(_spans(exporter, SpanKind.PRODUCER)) == 1
    assert len(_spans(exporter, SpanKind.CONSUMER)) == 2


def test_instrument_from_threads_at_once_instruments_once(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Eight threads instrumenting one bus together: one instrumentation, one token."""
    with EventBus() as bus:
        barrier = threading.Barrier(8)
        tokens: list[Any] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                barrier.wait(timeout=30)
                tokens.append(instrument(bus, tracer_provider=provider))
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert len(tokens) == 8
        assert len({id(t) for t in tokens}) == 1
        bus.subscribe(EventType.TASK_STARTED, lambda e: None)
        bus.publish(EventType.TASK_STARTED)
    assert len(_spans(exporter, SpanKind.PRODUCER)) == 1
    assert len(_spans(exporter, SpanKind.CONSUMER)) == 1


def test_instrument_on_a_closed_bus_leaves_nothing_behind(provider: TracerProvider) -> None:
    """instrument() on a closed bus raises BusClosedError."""
    bus = EventBus()
    bus.close()
    with pytest.raises(BusClosedError):
        instrument(bus, tracer_provider=provider)


def test_scope_and_root_share_one_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An event from an instrumented scope keeps its context upward: one publish span, one trace."""
    with EventBus() as root:
        scope = root.scope("agents")
        instrument(root, tracer_provider=provider)
        instrument(scope, tracer_provider=provider)
        root.subscribe(EventType.AGENT_STARTED, lambda e: None)
        scope.subscribe(EventType.AGENT_STARTED, lambda e: None)
        scope.publish(EventType.AGENT_STARTED)
    [producer] = _spans(exporter, SpanKind.PRODUCER)
    consumers = _spans(exporter, SpanKind.CONSUMER)
    assert len(consumers) == 2
    assert {s.context.trace_id for s in consumers} == {producer.context.trace_id}
    assert dict(producer.attributes or {})["atlas_events.scope"] == "agents"


def _redis_url() -> str:
    url = "redis://127.0.0.1:6379/0"
    try:
        import redis
    except ImportError:  # pragma: no cover - the redis extra is part of the dev set-up
        pytest.skip("the redis extra is not installed")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is required when CI=true", pytrace=False)
        pytest.skip("no Redis at 127.0.0.1:6379")
    return url


def _drop_namespace(url: str, namespace: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"*{namespace}*"))
        if keys:
            client.delete(*keys)


@pytest.mark.redis
def test_trace_continues_in_another_process_through_redis(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A handler in a second process gets a span in the publisher's trace (real Redis bridge)."""
    from atlas_events.bridges.redis import RedisBridge

    url = _redis_url()
    namespace = f"otel-test-{uuid.uuid4().hex[:8]}"
    root = Path(__file__).parent.parent
    with subprocess.Popen(
        [sys.executable, "-m", "tests._otel_node", url, namespace],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
    ) as child:
        try:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                child.kill()
                pytest.fail(f"receiver did not start: {line!r} {child.communicate()[1]}")
            with EventBus(name="sender") as bus:
                instrument(bus, tracer_provider=provider)
                with RedisBridge(bus, url, namespace, node_id="sender"):
                    bus.publish(EventType.TASK_COMPLETED, {"task": "t1"})
                    out, err = child.communicate(timeout=90)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
            _drop_namespace(url, namespace)
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["data"] == [{"task": "t1"}]
    task = "EventType.TASK_COMPLETED"
    [producer] = [s for s in _spans(exporter, SpanKind.PRODUCER) if task in s.name]
    # two handlers there: the recording one and wait_for_sync's
    processes = [s for s in report["spans"] if s["kind"] == "CONSUMER" and task in s["name"]]
    assert len(processes) == 2
    for process in processes:
        assert process["trace_id"] == producer.context.trace_id
        assert process["parent_span_id"] == producer.context.span_id
        assert process["parent_is_remote"] is True
    # the receiving side made no publish span of its own for the remote event
    assert [s for s in report["spans"] if s["kind"] == "PRODUCER" and task in s["name"]] == []

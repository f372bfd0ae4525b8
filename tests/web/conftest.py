"""Fixtures and helpers for the dashboard tests: servers, SSE parsing, waiting."""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import httpx
import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events._event import EMPTY_METADATA, trusted_event
from atlas_events._ids import new_id
from atlas_events.web import DashboardServer


@attrs.define
class Message:
    """One parsed Server-Sent Events message (or a lone comment)."""

    event: str = "message"
    id: str | None = None
    data: Any = None
    comments: list[str] = attrs.field(factory=list)
    retry: int | None = None

    @property
    def seq(self) -> int:
        assert self.id is not None
        return int(self.id)


def parse_block(lines: Iterable[str]) -> Message:
    """Parse the lines of one SSE message (without the blank line ending it)."""
    msg = Message()
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            msg.comments.append(line[1:].strip())
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            msg.id = value
        elif field == "event":
            msg.event = value
        elif field == "data":
            data.append(value)
        elif field == "retry":
            msg.retry = int(value)
    if data:
        msg.data = json.loads("\n".join(data))
    return msg


def parse_sse(text: str) -> list[Message]:
    """Parse a whole SSE body into messages."""
    blocks = text.replace("\r\n", "\n").split("\n\n")
    return [parse_block(b.split("\n")) for b in blocks if b.strip()]


def iter_messages(response: httpx.Response) -> Iterator[Message]:
    """Yield messages from a streaming httpx response as they arrive."""
    lines: list[str] = []
    for line in response.iter_lines():
        if line:
            lines.append(line)
        elif lines:
            yield parse_block(lines)
            lines = []


def events_of(messages: Iterable[Message]) -> list[Message]:
    """Only the messages that carry events (they have an id and a dict payload with a seq)."""
    return [
        m for m in messages if m.id is not None and isinstance(m.data, dict) and "seq" in m.data
    ]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.005)


async def async_wait_until(
    predicate: Callable[[], bool], within: float = 5.0, what: str = ""
) -> None:
    """The async twin of :func:`wait_until`."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def stream_count(bus: EventBus) -> int:
    """How many async streams (SSE clients) are attached to ``bus``."""
    return bus.stats()["streams"]


@pytest.fixture
def make_server() -> Iterator[Callable[..., DashboardServer]]:
    """Start dashboard servers on free ports; all are stopped after the test."""
    servers: list[DashboardServer] = []

    def make(bus: EventBus, **options: Any) -> DashboardServer:
        server = DashboardServer(bus, **options)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        assert not server.running


def malformed_event(
    event_type: enum.Enum = EventType.TASK_STARTED, data: Any = None, **fields: Any
) -> Event[Any]:
    """An event whose own fields break the ``Event`` contract.

    ``Event()`` refuses such fields; the package-internal fast constructor
    (``trusted_event``, used on hot paths and by bridges) does not check them,
    so a buggy producer can still make one. The dashboard must survive it.
    """
    values: dict[str, Any] = {
        "event_id": new_id(),
        "event_type": event_type,
        "data": data,
        "timestamp": time.time(),
        "source": None,
        "metadata": EMPTY_METADATA,
        "scope": (),
        "parent_id": None,
        "seq": -1,
        "correlation_id": None,
        "origin": None,
    }
    values.update(fields)
    return trusted_event(**values)


def inject(bus: EventBus, event: Event[Any]) -> None:
    """Record ``event`` unchecked, as a buggy middleware would.

    ``publish_event`` refuses malformed events before recording them; a
    middleware's result is only checked to be an ``Event``.
    """
    token = bus.add_middleware(lambda e: event)
    try:
        bus.publish(event.type)
    finally:
        token()

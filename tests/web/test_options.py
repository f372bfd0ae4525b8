"""Every numeric and structured option of the dashboard is checked when given, by name."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, cast

import httpx
import pytest

from atlas_events import EventBus
from atlas_events.web import DashboardServer, create_app


class Flaky:
    """A health source that fails."""

    def health(self) -> Mapping[str, Any]:
        raise ConnectionError("redis is down")


class Bridge:
    """A health source shaped like RedisBridge.health()."""

    def __init__(self) -> None:
        self.sent = 0

    def health(self) -> Mapping[str, Any]:
        self.sent += 1
        return {
            "state": "connected",
            "down_for": None,
            "sent": self.sent,
            "dead_lettered": 2,
            "outbox_depth": 3,
            "in_flight": 1,
            "password_hint": "s3cret",
        }


NUMERIC: list[tuple[str, Any, type[Exception]]] = [
    ("max_clients", 0, ValueError),
    ("max_clients", 1.5, TypeError),
    ("max_clients", True, TypeError),
    ("max_clients", "8", TypeError),
    ("client_queue", 0, ValueError),
    ("client_queue", None, TypeError),
    ("heartbeat", -1, ValueError),
    ("heartbeat", float("nan"), ValueError),
    ("heartbeat", float("inf"), ValueError),
    ("heartbeat", "15", TypeError),
    ("max_event_bytes", 10, ValueError),
    ("max_event_bytes", 2048.0, TypeError),
    ("send_timeout", 0, ValueError),
    ("send_timeout", -0.5, ValueError),
    ("send_timeout", float("nan"), ValueError),
    ("send_timeout", None, TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), NUMERIC)
def test_numeric_options_are_validated(bus: EventBus, name: str, value: Any, error: type) -> None:
    """create_app and DashboardServer both refuse a bad number, naming the option."""
    with pytest.raises(error, match=name):
        create_app(bus, **{name: value})
    with pytest.raises(error, match=name):
        DashboardServer(bus, **{name: value})


def test_other_options_are_validated(bus: EventBus) -> None:
    """Token, redact, hosts, types, health sources, port and timeouts."""
    with pytest.raises(ValueError, match="token"):
        create_app(bus, token="")
    with pytest.raises(TypeError, match="single str"):
        create_app(bus, redact="password")
    with pytest.raises(TypeError, match="allowed_hosts"):
        create_app(bus, allowed_hosts="localhost")
    with pytest.raises(ValueError, match="allowed_hosts"):
        create_app(bus, allowed_hosts=[""])
    with pytest.raises(TypeError, match="event_types"):
        create_app(bus, event_types=["task.started"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="health_sources"):
        create_app(bus, health_sources={"redis": object()})  # type: ignore[dict-item]
    for port, error in (
        (-1, ValueError),
        (70000, ValueError),
        ("80", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(error, match="port"):
            DashboardServer(bus, port=cast(Any, port))
    server = DashboardServer(bus)
    for timeout in (0, -1, "3"):
        with pytest.raises(ValueError, match="timeout"):
            server.start(timeout=timeout)  # type: ignore[arg-type]
    assert not server.running


def test_enum_classes_and_members_as_event_types(bus: EventBus) -> None:
    """event_types takes Enum classes (all members) and single members."""

    class A(enum.Enum):
        X = 1
        Y = 2

    app = create_app(bus, event_types=[A, A.X])
    assert app.state.dashboard.options.event_types == (A.X, A.Y, A.X)


@pytest.mark.asyncio
async def test_health_sources_in_stats(bus: EventBus) -> None:
    """Each source's health() shows under /stats' ``health``, redacted; a failing one says why."""
    app = create_app(bus, health_sources={"redis": Bridge(), "broken": Flaky()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        health = (await client.get("/stats")).json()["health"]
    assert health["redis"]["state"] == "connected"
    assert health["redis"]["dead_lettered"] == 2
    assert health["redis"]["password_hint"] == "***"
    assert health["broken"] == {"state": "unknown", "error": "ConnectionError: redis is down"}


@pytest.mark.asyncio
async def test_health_errors_do_not_show_url_passwords(bus: EventBus) -> None:
    """A health source whose error names its connection URL shows it without the password."""

    class Leaky:
        def health(self) -> dict[str, Any]:
            raise ConnectionError("cannot reach redis://:hunter2@cache:6379/0")

    app = create_app(bus, health_sources={"redis": Leaky()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        health = (await client.get("/stats")).json()["health"]
    assert health["redis"]["error"] == "ConnectionError: cannot reach redis://:***@cache:6379/0"

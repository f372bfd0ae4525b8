"""Query parsing: a typo is a 400 that names the valid choices, never an empty 200."""

from __future__ import annotations

import enum

import httpx
import pytest
from starlette.applications import Starlette

from atlas_events import EventBus, EventType
from atlas_events.web import create_app


class Probe(enum.Enum):
    PING = "probe.ping"


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/events", "/history"])
async def test_unknown_type_is_400_naming_the_valid_choices(bus: EventBus, path: str) -> None:
    """``type=NOPE`` names the bad value and lists the known types."""
    app = create_app(bus)
    async with client_for(app) as client:
        resp = await client.get(f"{path}?type=NOPE")
        assert resp.status_code == 400
        body = resp.json()
        assert body["parameter"] == "type"
        assert "'NOPE'" in body["error"]
        assert "EventType.TASK_STARTED" in body["valid"]
        assert "EventType.TASK_STARTED" in body["error"]
        # One bad name among good ones is still refused.
        resp = await client.get(f"{path}?type=TASK_STARTED,TASK_STRATED")
        assert resp.status_code == 400
        assert "TASK_STRATED" in resp.json()["error"]
    assert app.state.dashboard.clients == 0


@pytest.mark.asyncio
async def test_user_types_are_known_once_seen_subscribed_or_declared(bus: EventBus) -> None:
    """A user enum type is valid once recorded, subscribed to, or passed as event_types."""
    async with client_for(create_app(bus)) as client:
        assert (await client.get("/history?type=Probe.PING")).status_code == 400
    async with client_for(create_app(bus, event_types=[Probe])) as client:
        for spelling in ("Probe.PING", "PING", "probe.ping"):
            assert (await client.get(f"/history?type={spelling}")).status_code == 200
    token = bus.subscribe(Probe.PING, lambda e: None)
    async with client_for(create_app(bus)) as client:
        assert (await client.get("/history?type=Probe.PING")).status_code == 200
    token()
    bus.publish(Probe.PING)
    async with client_for(create_app(bus)) as client:
        resp = await client.get("/history?type=PING")
        assert resp.status_code == 200
        assert [e["type"] for e in resp.json()["events"]] == ["Probe.PING"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/events?typ=TASK_STARTED", "typ"),
        ("/history?limt=5", "limt"),
        ("/history?correlation=run-1", "correlation"),
        ("/stats?verbose=1", "verbose"),
        ("/trace?corelation_id=x", "corelation_id"),
        ("/events?ids=uuid", "ids"),
        ("/events?scope=agents/%20planner", "scope"),
        ("/history?limit=many", "limit"),
        ("/trace", "correlation_id"),
        ("/history?limit=1&limit=2", "limit"),
        ("/history?correlation_id=a&correlation_id=b", "correlation_id"),
        ("/trace?correlation_id=run-1&correlation_id=run-2", "correlation_id"),
        ("/events?replay=1&replay=0", "replay"),
        ("/stats?token=a&token=b", "token"),
        ("/history?limit=5_0", "limit"),
        ("/history?limit=%EF%BC%95", "limit"),  # a fullwidth digit
        ("/history?limit=%205", "limit"),
        ("/history?limit=+5", "limit"),
        ("/history?before=" + "9" * 5000, "before"),
    ],
)
async def test_malformed_queries_are_400(bus: EventBus, url: str, parameter: str) -> None:
    """Unknown parameter names and malformed values name the parameter (and the valid ones)."""
    bus.publish(EventType.TASK_STARTED, correlation_id="run-1")
    async with client_for(create_app(bus)) as client:
        resp = await client.get(url)
    assert resp.status_code == 400, url
    body = resp.json()
    assert body["parameter"] == parameter
    assert parameter in body["error"]


@pytest.mark.asyncio
async def test_good_filters_still_work(bus: EventBus) -> None:
    """Known types in every spelling, scope prefixes and correlation ids filter as documented."""
    bus.scope("agents").publish(EventType.TASK_STARTED, 1, correlation_id="r")
    bus.publish(EventType.TASK_COMPLETED, 2)
    async with client_for(create_app(bus)) as client:
        for query, expected in (
            ("type=task.started", [1]),
            ("type=TASK_COMPLETED", [2]),
            ("scope=agents", [1]),
            ("scope=/", [1, 2]),
            ("correlation_id=r", [1]),
        ):
            resp = await client.get(f"/history?{query}")
            assert resp.status_code == 200, query
            assert [e["data"] for e in resp.json()["events"]] == expected, query

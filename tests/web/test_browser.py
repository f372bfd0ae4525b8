"""The dashboard in a real browser: Playwright driving Debian's headless Chromium.

Runs whenever Chromium is installed, and always in CI (``CI=true``), where a
missing browser is a failure. Elsewhere, without Chromium, it is skipped.
With ``ATLAS_EVENTS_SCREENSHOTS=1`` the tests also save the README's
screenshots, ``docs/img/dashboard.png`` (main view) and ``docs/img/trace.png``
(trace view); a normal run writes nothing into the tree.
"""

from __future__ import annotations

import enum
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas_events import EventBus, EventType, correlate
from atlas_events.demo import DemoMesh
from atlas_events.web import DashboardServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
TRACE_SCREENSHOT = ROOT / "docs" / "img" / "trace.png"
SCREENSHOTS_WANTED = os.environ.get("ATLAS_EVENTS_SCREENSHOTS", "") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Probe(enum.Enum):
    PING = "probe.ping"
    DONE = "probe.done"


def find_chromium() -> str | None:
    """Debian's Chromium (``$CHROMIUM`` overrides the path)."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium shared by this module's tests."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    executable = find_chromium()
    if executable is None:
        if in_ci:
            pytest.fail("CI=true but Chromium is missing: .ci/run installs apt package 'chromium'")
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium); runs in CI")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            raise
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, make_server: Callable[..., DashboardServer]) -> Iterator[Any]:
    """A fresh page that records script errors (the test fails on any).

    Depends on ``make_server`` so that the page closes before the servers stop.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 860}, color_scheme="light")
    pg = context.new_page()
    errors: list[str] = []
    pg.allowed_statuses = ()  # HTTP errors the test provokes on purpose

    def on_console(msg: Any) -> None:
        text = msg.text
        allowed = any(f"status of {status}" in text for status in pg.allowed_statuses)
        if msg.type == "error" and not allowed:
            errors.append(text)

    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", on_console)
    yield pg
    context.close()
    assert errors == [], errors


def seqs(pg: Any) -> list[int]:
    """The seq of every timeline row, top (newest) first."""
    values = pg.eval_on_selector_all("#timeline tbody tr", "rows => rows.map(r => r.dataset.seq)")
    return [int(v) for v in values]


def wait_live(pg: Any) -> None:
    pg.wait_for_selector('#status[data-state="live"]', timeout=5000)


def test_dashboard_in_chromium(page: Any, make_server: Callable[..., DashboardServer]) -> None:
    """Live events within a second, filters, reload and reconnect without duplicates,
    text-only rendering."""
    bus = EventBus(history_limit=2000, name="mesh")
    mesh = DemoMesh(bus, seed=7)
    mesh.start()
    for _ in range(3):
        mesh.run_once()
    server = make_server(bus, token="browser-test-token")

    # The page opens with the token once, then lives on its cookie.
    page.goto(server.url)
    assert page.url == f"{server.base_url}/"
    wait_live(page)
    page.wait_for_function(
        f"() => document.querySelectorAll('#timeline tbody tr').length === {len(bus.history())}"
    )
    assert seqs(page) == [e.seq for e in reversed(bus.history())]

    # An event published from Python shows up within a second.
    t0 = time.monotonic()
    bus.publish(Probe.PING, {"marker": "first"}, source="pytest")
    seq = bus.last_seq
    page.wait_for_selector(f'#timeline tbody tr[data-seq="{seq}"]', timeout=1000)
    assert time.monotonic() - t0 < 1.0
    assert "first" in page.inner_text(f'#timeline tbody tr[data-seq="{seq}"]')

    # Payload text is shown as text: no element is created from it.
    bus.publish(Probe.PING, {"html": "<img src=x onerror=alert(1)><b>bold</b>"})
    row = f'#timeline tbody tr[data-seq="{bus.last_seq}"]'
    page.wait_for_selector(row, timeout=1000)
    assert "<img src=x onerror=alert(1)>" in page.inner_text(row)
    assert page.locator("#timeline img, #timeline b").count() == 0

    # A type filter hides the other events, also the ones arriving later.
    page.select_option("#filter-type", "Probe.PING")
    bus.publish(EventType.TASK_STARTED, {"task": "hidden"})
    bus.publish(Probe.PING, {"marker": "shown"})
    page.wait_for_selector(f'#timeline tbody tr[data-seq="{bus.last_seq}"]', timeout=1000)
    types = page.eval_on_selector_all("#timeline tbody tr", "rows => rows.map(r => r.dataset.type)")
    assert types == ["Probe.PING"] * 3
    assert page.locator(f'#timeline tbody tr[data-seq="{bus.last_seq - 1}"]').count() == 0

    # A scope filter keeps one subtree.
    page.click("#filter-reset")
    page.fill("#filter-scope", "agents/planner")
    scopes = page.eval_on_selector_all(
        "#timeline tbody tr td.scope", "cells => cells.map(c => c.textContent)"
    )
    assert scopes
    assert set(scopes) == {"agents/planner"}
    page.click("#filter-reset")

    # A reload shows every retained event exactly once and goes on live.
    page.reload()
    wait_live(page)
    expected = [e.seq for e in reversed(bus.history())]
    page.wait_for_function(
        f"() => document.querySelectorAll('#timeline tbody tr').length === {len(expected)}"
    )
    assert seqs(page) == expected
    mesh.run_once()
    page.wait_for_selector(f'#timeline tbody tr[data-seq="{bus.last_seq}"]', timeout=1000)

    # A dropped connection resumes with Last-Event-ID: events published while
    # the page was disconnected arrive once, nothing is lost.
    hub = server.app.state.dashboard
    assert server._loop is not None
    server._loop.call_soon_threadsafe(hub.close_streams)
    page.wait_for_selector('#status[data-state="reconnecting"]', timeout=2000)
    for i in range(5):
        bus.publish(Probe.PING, {"while_away": i})
    wait_live(page)
    page.wait_for_selector(f'#timeline tbody tr[data-seq="{bus.last_seq}"]', timeout=5000)
    got = seqs(page)
    assert len(got) == len(set(got))
    assert got == [e.seq for e in reversed(bus.history())]
    assert page.inner_text("#count-gaps") == "0"

    # /stats is polled every second.
    page.wait_for_function(
        f"() => document.querySelector('#health dd')?.textContent === '{bus.last_seq}'",
        timeout=3000,
    )


def test_page_without_token_explains_itself(
    page: Any, make_server: Callable[..., DashboardServer]
) -> None:
    """Opening a protected dashboard without its token says what to do."""
    bus = EventBus()
    server = make_server(bus, token="secret")
    page.allowed_statuses = (401,)
    response = page.goto(f"{server.base_url}/")
    assert response.status == 401
    assert "access token" in page.inner_text("body")
    bus.close()


class FakeBridge:
    """A health source shaped like ``RedisBridge.health()``."""

    def health(self) -> dict[str, Any]:
        return {
            "state": "connected",
            "down_for": None,
            "in_flight": 2,
            "outbox_depth": 3,
            "outbox_capacity": 10_000,
            "sent": 1520,
            "received": 1498,
            "delivered": 1498,
            "duplicates": 4,
            "reconnects": 1,
            "gaps": 0,
            "dead_lettered": 2,
        }


def agent_run(bus: EventBus, run: str) -> None:
    """One agent run with real causation: handlers publish in response, one fails, one idle gap."""
    planner = bus.scope("agents").scope("planner")
    provider = bus.scope("providers").scope("openai")

    def plan(ev: Any) -> None:
        if ev.source == "workflow":
            provider.publish(EventType.STREAM_STARTED, {"model": "small"}, source="openai")

    def stream(ev: Any) -> None:
        for i in range(3):
            provider.publish(Probe.PING, {"token": i}, source="openai")
        provider.publish(EventType.STREAM_FINISHED, {"tokens": 3}, source="openai")

    def finish(ev: Any) -> None:
        planner.publish(Probe.DONE, {"ok": True}, source="planner")

    def audit(ev: Any) -> None:
        raise RuntimeError("audit log is read-only")

    handlers = [
        bus.subscribe(EventType.TASK_STARTED, plan),
        bus.subscribe(EventType.STREAM_STARTED, stream),
        bus.subscribe(EventType.STREAM_FINISHED, finish),
        bus.subscribe(Probe.DONE, audit),
        bus.subscribe(EventType.HANDLER_ERROR, lambda e: None),
    ]
    with correlate(run):
        bus.publish(EventType.WORKFLOW_NODE_ENTERED, {"node": "plan"}, source="workflow")
        planner.publish(EventType.TASK_STARTED, {"task": "write a plan"}, source="workflow")
        time.sleep(0.25)  # the model thinks: an idle gap
        bus.publish(EventType.WORKFLOW_NODE_EXITED, {"node": "plan"}, source="workflow")
        bus.publish(EventType.WORKFLOW_NODE_ENTERED, {"node": "review"}, source="workflow")
        planner.publish(EventType.TASK_STARTED, {"task": "review the plan"}, source="workflow")
    for unsubscribe in handlers:
        unsubscribe()


def test_trace_rates_layout_and_bridges(
    page: Any, make_server: Callable[..., DashboardServer]
) -> None:
    """Trace waterfall, live rates, a table the detail panel does not squeeze, rows that hold
    still under the pointer, and the bridge health panel."""
    bus = EventBus(history_limit=2000, name="mesh")
    mesh = DemoMesh(bus, seed=3)
    mesh.start()
    for _ in range(3):
        mesh.run_once()
    agent_run(bus, "run-42")
    server = make_server(bus, health_sources={"redis": FakeBridge()})
    page.goto(server.url)
    wait_live(page)
    page.wait_for_function(
        f"() => document.querySelectorAll('#timeline tbody tr').length === {len(bus.history())}"
    )

    # Rates: the filtered view's chart and one sparkline per type.
    page.wait_for_function("() => Number(document.querySelector('#rate-chart').dataset.total) > 0")
    assert page.locator("#rate-chart polyline").count() == 1
    types = {e.type_name for e in bus.history()}
    page.wait_for_function(
        f"() => document.querySelectorAll('#type-counts svg.spark').length === {len(types)}"
    )

    # Bridge health.
    page.wait_for_selector("#bridges-panel:not([hidden]) .bridge[data-name='redis']")
    bridge = page.inner_text("#bridges")
    assert "connected" in bridge
    assert "dead letters" in bridge

    # Layout: full type names on hover; the detail panel scrolls the table, never squeezes it.
    first_type = page.locator("#timeline tbody tr:first-child td.type .chip")
    assert first_type.get_attribute("title") == first_type.inner_text()
    widths = "() => [...document.querySelectorAll('#timeline th')].map(th => th.offsetWidth)"
    before = page.evaluate(widths)
    page.click("#timeline tbody tr:nth-child(2) td.time")
    page.wait_for_selector("#detail:not([hidden])")
    assert page.evaluate(widths)[:6] == before[:6]
    wrap = page.evaluate(
        "() => { const w = document.querySelector('.table-wrap');"
        " return [w.scrollWidth, w.clientWidth]; }"
    )
    assert wrap[0] >= 1040  # the table keeps its width and scrolls
    white_space = page.evaluate(
        "() => getComputedStyle(document.querySelector('#detail-json')).whiteSpace"
    )
    assert white_space == "pre"

    # Rows hold still while the pointer is over the table; the banner counts what waits.
    page.hover("#timeline tbody tr:nth-child(3)")
    top = seqs(page)[0]
    bus.publish(Probe.PING, {"while": "reading"})
    page.wait_for_selector("#paused-banner:not([hidden])")
    page.wait_for_timeout(200)
    assert seqs(page)[0] == top
    assert "1 new event" in page.inner_text("#paused-banner")
    page.mouse.move(5, 5)
    page.wait_for_selector(f'#timeline tbody tr[data-seq="{bus.last_seq}"]', timeout=2000)
    assert seqs(page)[0] == bus.last_seq
    page.click("#detail-close")

    if SCREENSHOTS_WANTED:
        page.wait_for_timeout(1100)  # the sidebar and rates redraw every second
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

    # Trace: click the run's correlation id.
    run_events = bus.history(correlation_id="run-42")
    errors = [e for e in run_events if e.type is EventType.HANDLER_ERROR]
    shown = len(run_events) - len(errors)
    page.fill("#filter-correlation", "run-42")
    page.click("#timeline tbody tr:first-child .trace-link")
    page.wait_for_selector("#trace:not([hidden]) .trace-row[data-seq]")
    assert page.locator("#trace .trace-row[data-seq]").count() == shown
    assert "run-42" in page.inner_text("#trace-title")
    assert page.locator("#trace .dot.error").count() == len(errors) == 2
    assert "audit log is read-only" in page.inner_text("#trace-rows")
    assert page.locator("#trace .gap-band").count() >= 1
    lanes = page.eval_on_selector_all(
        "#trace-lanes .lane-tag", "tags => tags.map(t => t.textContent)"
    )
    assert {"(root)", "agents/planner", "providers/openai"} <= set(lanes)
    indents = page.eval_on_selector_all(
        "#trace .trace-row[data-seq] .trace-label",
        "ls => ls.map(l => parseFloat(l.style.paddingLeft))",
    )
    assert max(indents) > min(indents)  # a causation tree, not a flat list
    # Idle gaps are narrow slices of the axis: the events get the room, and
    # no event sits inside a gap.
    layout = page.evaluate(
        """() => {
        const track = document.querySelector('#trace .trace-row[data-seq] .trace-track');
        const box = track.getBoundingClientRect();
        const bands = [...track.querySelectorAll('.gap-band')].map(b => b.getBoundingClientRect());
        const xs = [...document.querySelectorAll('#trace .trace-row[data-seq] .dot')]
            .map(d => { const r = d.getBoundingClientRect(); return (r.left + r.right) / 2; });
        return {
            width: box.width,
            gap: bands.reduce((sum, b) => sum + b.width, 0),
            inside: xs.filter(x => bands.some(b => x > b.left + 1 && x < b.right - 1)).length,
            ticks: document.querySelectorAll('#trace-axis .tick').length,
        };
    }"""
    )
    assert 0 < layout["gap"] <= 0.25 * layout["width"]
    assert layout["inside"] == 0
    assert layout["ticks"] >= 3
    if SCREENSHOTS_WANTED:
        page.screenshot(path=str(TRACE_SCREENSHOT))
    page.keyboard.press("Escape")
    page.wait_for_selector("#trace", state="hidden")

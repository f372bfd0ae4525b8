"""The dashboard in a real browser: Playwright driving Debian's headless Chromium.

Runs whenever Chromium is installed, and always in CI (``CI=true``), where a
missing browser is a failure. Elsewhere, without Chromium, it is skipped.
The test saves the README's screenshot to ``docs/img/dashboard.png``.
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

from atlas_events import EventBus, EventType
from atlas_events.demo import DemoMesh
from atlas_events.web import DashboardServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
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


def test_dashboard_in_chromium(
    page: Any, make_server: Callable[..., DashboardServer], tmp_path: Path
) -> None:
    """Live events within a second, filters, reload and reconnect without duplicates,
    text-only rendering; saves docs/img/dashboard.png."""
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

    # Two more runs for a lively picture, a filter-free view, then the screenshot.
    mesh.run_once()
    mesh.run_once()
    page.wait_for_selector(f'#timeline tbody tr[data-seq="{bus.last_seq}"]', timeout=1000)
    page.wait_for_function(  # /stats is polled every second
        f"() => document.querySelector('#health dd')?.textContent === '{bus.last_seq}'",
        timeout=3000,
    )
    page.wait_for_timeout(600)  # let the sidebar (drawn every 0.5 s) catch up
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


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

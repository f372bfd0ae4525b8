"""Tests for the test kit: EventRecorder, capture_events, HandlerFailures and the pytest plugin."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from atlas_events import EventBus, EventType, declare
from atlas_events.exceptions import InvalidHandlerError
from atlas_events.testing import (
    EventRecorder,
    HandlerFailures,
    HandlerFailuresError,
    capture_events,
    watch_handler_failures,
)

ET = EventType


# ------------------------------------------------------------------ recorder


def test_capture_events_records_in_order_and_unsubscribes(bus: EventBus) -> None:
    """Inside the block everything is recorded in order; after it, nothing."""
    with capture_events(bus) as rec:
        bus.publish(ET.TASK_STARTED, 1)
        bus.publish(ET.TASK_COMPLETED, 2)
    bus.publish(ET.TASK_FAILED, 3)
    assert rec.types == [ET.TASK_STARTED, ET.TASK_COMPLETED]
    assert len(rec) == 2
    assert rec.subscription is not None
    assert not rec.subscription.active
    assert bus.subscriber_count() == 0


def test_capture_events_of_one_type_and_typed_keys(bus: EventBus) -> None:
    """A type filter records only that type; of_type accepts a typed EventKey."""
    key = declare(ET.TASK_COMPLETED, int)
    with capture_events(bus, key) as rec:
        bus.publish(ET.TASK_STARTED, 0)
        bus.publish(key, 5)
    assert [e.data for e in rec.of_type(key)] == [5]
    assert rec.of_type(ET.TASK_STARTED) == []


def test_assert_published_by_count_data_and_where(bus: EventBus) -> None:
    """assert_published returns the matches and explains a mismatch."""
    with capture_events(bus) as rec:
        bus.publish(ET.TASK_STARTED, {"n": 1})
        bus.publish(ET.TASK_STARTED, {"n": 2})
    assert len(rec.assert_published(ET.TASK_STARTED, count=2)) == 2
    assert rec.assert_published(ET.TASK_STARTED, data={"n": 2})[0].data == {"n": 2}
    assert len(rec.assert_published(ET.TASK_STARTED, where=lambda e: e.data["n"] > 1)) == 1
    with pytest.raises(AssertionError, match=r"exactly 3 .* found 2; recorded: EventType.TASK"):
        rec.assert_published(ET.TASK_STARTED, count=3)
    with pytest.raises(AssertionError, match="with data=7"):
        rec.assert_published(ET.TASK_STARTED, data=7)
    rec.assert_published(ET.TASK_FAILED, count=0)
    with pytest.raises(ValueError, match="count"):
        rec.assert_published(ET.TASK_STARTED, count=-1)


def test_assert_not_published_and_clear(bus: EventBus) -> None:
    """assert_not_published fails with what it found; clear() forgets."""
    with capture_events(bus) as rec:
        bus.publish(ET.TASK_FAILED)
        rec.assert_not_published(ET.TASK_STARTED)
        with pytest.raises(AssertionError, match="expected no"):
            rec.assert_not_published(ET.TASK_FAILED)
        rec.clear()
        rec.assert_not_published(ET.TASK_FAILED)
        assert rec.events == []


def test_assert_order_allows_interleaving_and_names_the_missing_type(bus: EventBus) -> None:
    """Relative order holds with other events between; a wrong order names the culprit."""
    with capture_events(bus) as rec:
        for t in (ET.AGENT_STARTED, ET.TASK_STARTED, ET.TASK_COMPLETED, ET.AGENT_STOPPED):
            bus.publish(t)
    rec.assert_order(ET.AGENT_STARTED, ET.TASK_COMPLETED, ET.AGENT_STOPPED)
    rec.assert_order(declare(ET.TASK_STARTED, type(None)), ET.AGENT_STOPPED)
    with pytest.raises(AssertionError, match=r"EventType.AGENT_STARTED not found after position 4"):
        rec.assert_order(ET.AGENT_STOPPED, ET.AGENT_STARTED)
    with pytest.raises(AssertionError, match="TASK_FAILED"):
        rec.assert_order(ET.TASK_FAILED)


def test_wait_for_events_from_another_thread(bus: EventBus) -> None:
    """wait_for blocks until enough matching events arrived from a worker thread."""
    with capture_events(bus) as rec:

        def work() -> None:
            for i in range(5):
                time.sleep(0.005)
                bus.publish(ET.TASK_COMPLETED, i)

        worker = threading.Thread(target=work)
        worker.start()
        got = rec.wait_for(ET.TASK_COMPLETED, count=3, timeout=10)
        odd = rec.wait_for(ET.TASK_COMPLETED, where=lambda e: e.data == 3, timeout=10)
        worker.join(10)
    assert [e.data for e in got][:3] == [0, 1, 2]
    assert [e.data for e in odd] == [3]


def test_wait_for_times_out_with_what_was_recorded(bus: EventBus) -> None:
    """A wait that is not satisfied raises TimeoutError listing the recorded events."""
    with capture_events(bus) as rec:
        bus.publish(ET.TASK_STARTED)
        with pytest.raises(TimeoutError, match=r"got 0; recorded: EventType.TASK_STARTED#1"):
            rec.wait_for(ET.TASK_COMPLETED, timeout=0.05)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"count": 0}, ValueError),
        ({"count": 1.0}, TypeError),
        ({"timeout": 0}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": float("inf")}, ValueError),
        ({"timeout": "5"}, TypeError),
    ],
)
def test_wait_for_validates_its_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """count and timeout are checked up front, naming the option (no hang on NaN or inf)."""
    rec = EventRecorder()
    with pytest.raises(error, match=next(iter(kwargs))):
        rec.wait_for(ET.TASK_STARTED, **kwargs)
    with pytest.raises(error, match=next(iter(kwargs))):
        asyncio.run(rec.wait_for_async(ET.TASK_STARTED, **kwargs))


@pytest.mark.asyncio
async def test_wait_for_async_from_threads_and_tasks(bus: EventBus) -> None:
    """wait_for_async wakes for events from worker threads and from tasks on the loop."""
    with capture_events(bus) as rec:
        worker = threading.Timer(0.02, bus.publish, args=(ET.TASK_STARTED, "thread"))
        worker.start()
        got = await rec.wait_for_async(ET.TASK_STARTED, timeout=10)
        assert [e.data for e in got] == ["thread"]

        async def later() -> None:
            await asyncio.sleep(0.01)
            bus.publish(ET.TASK_COMPLETED, "task")
            bus.publish(ET.TASK_COMPLETED, "task 2")

        task = asyncio.create_task(later())
        got = await rec.wait_for_async(ET.TASK_COMPLETED, count=2, timeout=10)
        await task
        worker.join(10)
    assert [e.data for e in got] == ["task", "task 2"]
    assert rec._async_waiters == []


@pytest.mark.asyncio
async def test_wait_for_async_times_out_and_cleans_up(bus: EventBus) -> None:
    """A timed-out async wait raises TimeoutError and leaves no waiter behind."""
    with capture_events(bus) as rec:
        with pytest.raises(TimeoutError, match=r"waited 0\.02s for 1"):
            await rec.wait_for_async(ET.TASK_COMPLETED, timeout=0.02)
        assert rec._async_waiters == []
        bus.publish(ET.TASK_COMPLETED)  # no waiter to wake, no error


# ---------------------------------------------------------- handler failures


def test_handler_failures_collects_sync_thread_and_scope_failures(bus: EventBus) -> None:
    """Failures on the test thread, a worker thread and a child scope arrive, with tracebacks."""
    watch = HandlerFailures(bus)

    def broken(e: Any) -> None:
        raise ValueError(f"bug {e.data}")

    child = bus.scope("child")
    bus.subscribe(ET.TASK_STARTED, broken)
    child.subscribe(ET.TASK_COMPLETED, broken)
    bus.publish(ET.TASK_STARTED, "main")
    worker = threading.Thread(target=bus.publish, args=(ET.TASK_STARTED, "worker"), name="w1")
    worker.start()
    worker.join(10)
    child.publish(ET.TASK_COMPLETED, "child")
    failures = watch.failures
    assert len(failures) == 3
    assert {f.thread for f in failures} >= {"w1"}
    assert all("ValueError: bug" in f.traceback for f in failures)
    assert all("in broken" in f.traceback for f in failures)
    with pytest.raises(HandlerFailuresError, match="3 handler failure"):
        watch.check()
    watch.check()  # each failure is raised once
    watch.close()


def test_take_claims_expected_failures(bus: EventBus) -> None:
    """A test that provokes a failure on purpose takes it, and check() passes."""
    with watch_handler_failures(bus) as watch:
        bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
        bus.publish(ET.TASK_STARTED)
        (taken,) = watch.take()
        assert isinstance(taken.failure.exception, ZeroDivisionError)
        assert len(watch) == 0


def test_watch_handler_failures_raises_at_the_end_of_the_block(bus: EventBus) -> None:
    """Leaving the block with unclaimed failures raises them."""
    bus.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    with (
        pytest.raises(HandlerFailuresError, match="ZeroDivisionError"),
        watch_handler_failures(bus),
    ):
        bus.publish(ET.TASK_STARTED)
    assert bus.subscriber_count(ET.HANDLER_ERROR) == 0


@pytest.mark.asyncio
async def test_handler_failures_collects_async_failures(bus: EventBus) -> None:
    """An async handler's failure is captured with is_async and its traceback."""
    watch = HandlerFailures(bus)

    async def broken(e: Any) -> None:
        raise KeyError("async bug")

    bus.subscribe(ET.TASK_STARTED, broken)
    await bus.publish_async(ET.TASK_STARTED)
    (f,) = watch.take()
    assert f.failure.is_async
    assert "KeyError: 'async bug'" in f.traceback
    assert "async handler" in str(f)
    watch.close()


@pytest.mark.parametrize("depth", [0, 2], ids=["on-the-bus", "on-a-grandchild"])
def test_handler_failures_sees_reports_a_middleware_drops(bus: EventBus, depth: int) -> None:
    """A middleware that drops HANDLER_ERROR (an allow-list, say) does not hide failures.

    The watch's tap is inherited middleware added first: it sees each report
    where it is published, before the bus's (or the scope's) own middleware,
    so a failing handler still fails the test, once.
    """
    watch = HandlerFailures(bus)
    where: EventBus = bus
    for name in ("a", "b")[:depth]:
        where = where.scope(name)
    where.add_middleware(lambda e: e if e.type is ET.TASK_STARTED else None)
    where.subscribe(ET.TASK_STARTED, lambda e: 1 / 0)
    where.publish(ET.TASK_STARTED)
    (failure,) = watch.take()
    assert isinstance(failure.failure.exception, ZeroDivisionError)
    watch.close()
    assert bus.stats()["middleware"] == (1 if depth == 0 else 0)  # the watch's tap is gone
    assert bus.subscriber_count(ET.HANDLER_ERROR) == 0


# ------------------------------------------------------------- pytest plugin

_PLUGIN_TESTS = """
import asyncio, concurrent.futures, threading, time
import pytest
from atlas_events import EventBus, EventType
{header}

def test_async_handler_failure(atlas_bus):
    async def main():
        async def broken(e):
            raise ValueError("async handler bug")
        atlas_bus.subscribe(EventType.TASK_COMPLETED, broken)
        await atlas_bus.publish_async(EventType.TASK_COMPLETED)
    asyncio.run(main())

def test_worker_thread_failure(atlas_bus):
    def broken(e):
        raise ValueError("thread handler bug")
    atlas_bus.subscribe(EventType.TASK_COMPLETED, broken)
    t = threading.Thread(target=atlas_bus.publish, args=(EventType.TASK_COMPLETED,))
    t.start(); t.join()

def test_executor_swallowed_failure(atlas_bus):
    atlas_bus.subscribe(EventType.TASK_COMPLETED, lambda e: 1 / 0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(atlas_bus.publish, EventType.TASK_COMPLETED)

def test_scope_failure(atlas_bus):
    child = atlas_bus.scope("agents")
    child.subscribe(EventType.TASK_STARTED, lambda e: [][1])
    child.publish(EventType.TASK_STARTED)

def test_claimed_failure_passes(atlas_bus, atlas_handler_failures):
    atlas_bus.subscribe(EventType.TASK_FAILED, lambda e: 1 / 0)
    atlas_bus.publish(EventType.TASK_FAILED)
    (f,) = atlas_handler_failures.take()
    assert isinstance(f.failure.exception, ZeroDivisionError)

@pytest.fixture
def late_failure(atlas_bus, atlas_handler_failures):
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    async def slow(e):
        await asyncio.sleep(0.2)
        raise RuntimeError("late async bug")
    atlas_bus.subscribe(EventType.TASK_STARTED, slow, loop=loop)
    yield
    deadline = time.monotonic() + 10
    while not len(atlas_handler_failures) and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(10)
    loop.close()

def test_failure_after_the_body_fails_at_teardown(atlas_bus, late_failure):
    atlas_bus.publish(EventType.TASK_STARTED)  # the handler fails after the body returned

def test_recorder_and_clean_run(atlas_bus, atlas_recorder):
    atlas_bus.publish(EventType.TASK_STARTED, 1)
    atlas_recorder.assert_published(EventType.TASK_STARTED, data=1)

def test_old_names_still_work(event_bus, event_recorder):
    event_bus.publish(EventType.TASK_STARTED)
    event_recorder.assert_published(EventType.TASK_STARTED)
"""


def _run_pytest(
    tmp_path: Path, header: str = "", *args: str, autoload: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run pytest in a fresh process on the plugin tests (the plugin comes from the entry point)."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    plugins: tuple[str, ...] = ()
    if autoload:
        env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        plugins = ("-p", "no:asyncio")  # not used here; it warns about its own settings
    else:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    (tmp_path / "test_plugin_use.py").write_text(
        textwrap.dedent(_PLUGIN_TESTS.replace("{header}", header))
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *plugins, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )


def _outcomes(out: str) -> dict[str, str]:
    """Test name -> PASSED / FAILED / ERROR, from ``-rA`` short summary lines."""
    result: dict[str, str] = {}
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR") and "::" in rest:
            name = rest.split("::", 1)[1].split(" ", 1)[0]
            result[name] = "ERROR" if "ERROR" in (word, result.get(name)) else word
    return result


def test_plugin_fails_tests_whose_handlers_fail(tmp_path: Path) -> None:
    """Installed plugin: every shape of handler failure fails its test, with the traceback."""
    proc = _run_pytest(tmp_path)
    outcomes = _outcomes(proc.stdout)
    assert outcomes == {
        "test_async_handler_failure": "FAILED",
        "test_worker_thread_failure": "FAILED",
        "test_executor_swallowed_failure": "FAILED",
        "test_scope_failure": "FAILED",
        "test_claimed_failure_passes": "PASSED",
        "test_failure_after_the_body_fails_at_teardown": "ERROR",
        "test_recorder_and_clean_run": "PASSED",
        "test_old_names_still_work": "PASSED",
    }, proc.stdout[-3000:]
    for text in ("async handler bug", "thread handler bug", "ZeroDivisionError", "IndexError"):
        assert text in proc.stdout
    assert "late async bug" in proc.stdout
    assert "the event_bus fixture is deprecated; use atlas_bus" in proc.stdout


def test_old_conftest_line_loads_the_plugin_once(tmp_path: Path) -> None:
    """`pytest_plugins = ["atlas_events.testing"]` still works beside the entry point."""
    proc = _run_pytest(
        tmp_path,
        'pytest_plugins = ["atlas_events.testing"]',
        "-W",
        "error::DeprecationWarning",
        "-k",
        "recorder or old_names",
    )
    outcomes = _outcomes(proc.stdout)
    assert outcomes == {
        "test_recorder_and_clean_run": "PASSED",
        "test_old_names_still_work": "ERROR",  # the deprecation, raised as an error here
    }, proc.stdout[-3000:]
    assert "already registered" not in proc.stdout + proc.stderr


def test_plugin_without_autoload_through_the_old_line(tmp_path: Path) -> None:
    """With entry points off, the old line (or -p) still brings the fixtures."""
    proc = _run_pytest(
        tmp_path,
        'pytest_plugins = ["atlas_events.testing"]',
        "-k",
        "recorder or worker_thread",
        autoload=False,
    )
    assert _outcomes(proc.stdout) == {
        "test_recorder_and_clean_run": "PASSED",
        "test_worker_thread_failure": "FAILED",
    }, proc.stdout[-3000:]


def test_deprecated_fixture_names_warn_at_the_test_that_uses_them(tmp_path: Path) -> None:
    """The DeprecationWarning of event_bus/event_recorder points at the test, not into pytest."""
    proc = _run_pytest(tmp_path, "", "-k", "old_names")
    assert _outcomes(proc.stdout) == {"test_old_names_still_work": "PASSED"}, proc.stdout[-3000:]
    for name, new in (("event_bus", "atlas_bus"), ("event_recorder", "atlas_recorder")):
        pattern = (
            rf"test_plugin_use\.py:\d+: DeprecationWarning: the {name} fixture is deprecated; "
            f"use {new}"
        )
        assert re.search(pattern, proc.stdout), proc.stdout[-3000:]


def test_recorder_refuses_an_async_or_non_callable_where() -> None:
    """An async `where` would match everything (a coroutine is truthy): refused up front.

    So is a non-callable one, naming the role, in assert_published, wait_for
    and wait_for_async.
    """

    async def is_big(event: Any) -> bool:
        return True

    rec = EventRecorder()
    for where in (is_big, 42):
        with pytest.raises(InvalidHandlerError, match="where"):
            rec.assert_published(ET.TASK_STARTED, where=where)  # type: ignore[arg-type]
        with pytest.raises(InvalidHandlerError, match="where"):
            rec.wait_for(ET.TASK_STARTED, where=where)  # type: ignore[arg-type]
        with pytest.raises(InvalidHandlerError, match="where"):
            asyncio.run(rec.wait_for_async(ET.TASK_STARTED, where=where))  # type: ignore[arg-type]

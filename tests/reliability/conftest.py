"""Shared helpers of the reliability suite.

* :class:`Workers` runs worker threads whose exceptions are collected and
  re-raised in the main thread (a failure inside a thread fails the test),
  and whose join has a deadline: a deadlock fails the test with every stuck
  thread's stack instead of hanging it.
* Hypothesis profiles: ``reliability-ci`` (the published figures, chosen when
  ``CI=true``) and ``reliability-dev`` (fewer examples, for a quick local
  run). ``ATLAS_RELIABILITY_PROFILE=ci|dev`` overrides the choice. The
  profiles are registered, never loaded globally: only the tests of this
  directory use them.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

__all__ = ["CI", "PROFILE", "Workers", "collect", "profile", "scale"]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


CI = _truthy(os.environ.get("CI"))

settings.register_profile(
    "reliability-ci",
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "reliability-dev",
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

PROFILE = "reliability-" + (os.environ.get("ATLAS_RELIABILITY_PROFILE") or ("ci" if CI else "dev"))


def profile(**overrides: Any) -> settings:
    """The active reliability profile, with ``overrides`` applied."""
    return settings(settings.get_profile(PROFILE), **overrides)


def scale(ci: int, dev: int) -> int:
    """``ci`` under the CI profile, else ``dev`` (for example counts)."""
    return ci if PROFILE == "reliability-ci" else dev


def collect() -> None:
    """Run the garbage collector until nothing more is freed."""
    for _ in range(4):
        if not gc.collect():
            break


class Workers:
    """Worker threads that report their failures to the main thread.

    ``start`` runs a target in a daemon thread; any exception it raises is
    recorded and sets :attr:`stop` so that the other workers can wind down.
    ``join`` waits for every worker up to a deadline, then raises: an
    ``AssertionError`` with the stacks of the threads still running (a
    deadlock or livelock), or an ``ExceptionGroup`` of the workers' errors.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._joined = False

    def start(self, target: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        """Run ``target(*args)`` in a new daemon thread."""

        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # every failure must reach the test
                exc.add_note(f"raised in worker thread {threading.current_thread().name}")
                with self._lock:
                    self._errors.append(exc)
                self.stop.set()

        thread = threading.Thread(
            target=run, name=name or f"worker-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    @property
    def errors(self) -> list[BaseException]:
        with self._lock:
            return list(self._errors)

    def join(self, timeout: float) -> float:
        """Wait for every worker; return the seconds waited.

        Raises:
            AssertionError: Some worker still runs after ``timeout`` seconds
                (the message holds its stack).
            ExceptionGroup: Some worker raised.
        """
        self._joined = True
        start = time.monotonic()
        deadline = start + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        waited = time.monotonic() - start
        stuck = [t for t in self._threads if t.is_alive()]
        if stuck:
            self.stop.set()
            frames = sys._current_frames()
            stacks = "\n".join(
                f"--- {t.name} ---\n" + "".join(traceback.format_stack(frames[t.ident]))
                for t in stuck
                if t.ident in frames
            )
            raise AssertionError(
                f"{len(stuck)} worker thread(s) still running after {timeout:.0f}s "
                f"(deadlock?):\n{stacks}"
            )
        self.raise_errors()
        return waited

    def raise_errors(self) -> None:
        """Re-raise the workers' exceptions (as an ``ExceptionGroup``), if any."""
        errors = self.errors
        if errors:
            raise BaseExceptionGroup(f"{len(errors)} worker thread(s) failed", errors)


@pytest.fixture
def workers() -> Iterator[Workers]:
    """A :class:`Workers` group; stragglers are stopped and checked at teardown."""
    group = Workers()
    try:
        yield group
    finally:
        group.stop.set()
        if not group._joined:
            group.join(timeout=30)

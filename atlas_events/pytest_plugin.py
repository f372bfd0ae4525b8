"""The pytest plugin: bus, recorder and handler-failure fixtures, loaded by installing the package.

Registered through the ``pytest11`` entry point, so installing atlas-events
is enough. Fixtures (prefixed so they cannot collide with yours):

* ``atlas_bus``: a fresh :class:`EventBus`, closed after the test. A
  handler that fails on it -- sync or async, on the test's thread or any
  other -- fails the test, with the handler's traceback, when the test body
  returns (or at teardown, for failures that arrive later).
* ``atlas_handler_failures``: the :class:`HandlerFailures` of ``atlas_bus``;
  ``take()`` claims failures a test provoked on purpose.
* ``atlas_recorder``: an :class:`EventRecorder` of everything published on
  ``atlas_bus``.

``event_bus`` and ``event_recorder`` are the old names: they still work and
issue a :class:`DeprecationWarning`. Disable the plugin with
``-p no:atlas_events.pytest_plugin``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from ._bus import EventBus
from .testing import EventRecorder, HandlerFailures, capture_events

__all__ = [
    "atlas_bus",
    "atlas_handler_failures",
    "atlas_recorder",
    "event_bus",
    "event_recorder",
    "pytest_runtest_call",
]

_WATCHES = pytest.StashKey[list[HandlerFailures]]()


def _watch(request: pytest.FixtureRequest, bus: EventBus) -> HandlerFailures:
    """Start collecting ``bus``'s handler failures for the running test."""
    watch = HandlerFailures(bus)
    request.node.stash.setdefault(_WATCHES, []).append(watch)
    return watch


@pytest.fixture
def atlas_bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    """A fresh bus; any handler failure on it fails the test; closed afterwards."""
    bus = EventBus(name=f"test:{request.node.name}")
    watch = _watch(request, bus)
    try:
        yield bus
        watch.check()  # failures that arrived after the test body returned
    finally:
        watch.close()
        bus.close()


@pytest.fixture
def atlas_handler_failures(atlas_bus: EventBus, request: pytest.FixtureRequest) -> HandlerFailures:
    """The handler failures of ``atlas_bus``; unclaimed ones fail the test."""
    watches: list[HandlerFailures] = request.node.stash[_WATCHES]
    return watches[-1]


@pytest.fixture
def atlas_recorder(atlas_bus: EventBus) -> Iterator[EventRecorder]:
    """Records everything published on ``atlas_bus``."""
    with capture_events(atlas_bus) as rec:
        yield rec


def _deprecated(request: pytest.FixtureRequest, old: str, new: str) -> None:
    """Warn at the test that asked for ``old`` (a stack level would point into pytest)."""
    request.node.warn(DeprecationWarning(f"the {old} fixture is deprecated; use {new}"))


@pytest.fixture
def event_bus(atlas_bus: EventBus, request: pytest.FixtureRequest) -> EventBus:
    """Deprecated name of ``atlas_bus``."""
    _deprecated(request, "event_bus", "atlas_bus")
    return atlas_bus


@pytest.fixture
def event_recorder(atlas_recorder: EventRecorder, request: pytest.FixtureRequest) -> EventRecorder:
    """Deprecated name of ``atlas_recorder``."""
    _deprecated(request, "event_recorder", "atlas_recorder")
    return atlas_recorder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail a test whose body returned while handlers had failed on its bus."""
    result = yield  # a test that raised is reported as it is
    for watch in item.stash.get(_WATCHES, ()):
        watch.check()
    return result

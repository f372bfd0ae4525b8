"""Shared fixtures for the atlas-events test suite."""

from __future__ import annotations

import enum
import gc
from collections.abc import Iterator

import pytest

from atlas_events import EventBus

pytest_plugins = ["atlas_events.testing"]


class Color(enum.Enum):
    """A user-defined event type enum (any Enum works as an event type)."""

    RED = 1
    GREEN = 2


class Alpha(enum.IntEnum):
    """An IntEnum: its members compare and hash like ints."""

    X = 1


class Beta(enum.IntEnum):
    """Another IntEnum whose member has the same value as Alpha.X."""

    Y = 1


@pytest.fixture
def bus() -> Iterator[EventBus]:
    """A fresh root bus with default options, closed after the test."""
    b = EventBus(name="test-root")
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def strict_bus() -> Iterator[EventBus]:
    """A bus that raises handler errors (as an ExceptionGroup) instead of reporting them."""
    b = EventBus(raise_handler_errors=True, name="strict")
    try:
        yield b
    finally:
        b.close()


def collect() -> None:
    """Run the garbage collector until nothing more is freed."""
    for _ in range(3):
        if not gc.collect():
            break

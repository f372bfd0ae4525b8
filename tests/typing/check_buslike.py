"""Checked by ``mypy --strict`` (see pyproject's [tool.mypy] files): buses are ``BusLike``.

The modules built on the bus (``_policies``, ``_registration``, ``_streams``,
``_waiting``, ``_wrappers``) type it as the ``BusLike`` protocol instead of
importing ``_bus``; the facade hands them itself. These assignments fail to
type-check if ``EventBus`` stops satisfying the protocol. Nothing here runs.
"""

from __future__ import annotations

from atlas_events import EventBus, ScopedEventBus
from atlas_events._buslike import BusLike


def root_bus(bus: EventBus) -> BusLike:
    return bus


def scoped_bus(bus: ScopedEventBus) -> BusLike:
    return bus

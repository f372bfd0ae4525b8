"""``BusLike``: the part of an ``EventBus`` that the modules built on the bus use.

``_policies``, ``_registration``, ``_streams``, ``_waiting`` and ``_wrappers``
take their bus typed as this protocol, so none of them imports ``_bus``, not
even for type checking (an import contract forbids it). ``EventBus``
satisfies it structurally; ``tests/typing/check_buslike.py`` checks that.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import blinker

    from ._event import Event, EventKey
    from ._history import History
    from ._recorder import Sink
    from ._subscription import Subscription

__all__ = ["BusLike"]


class BusLike(Protocol):
    """What those modules call on a bus: its name and ids, publish, subscribe, sinks."""

    @property
    def name(self) -> str: ...

    @property
    def terminal_ids(self) -> frozenset[int]: ...

    @property
    def last_seq(self) -> int: ...

    def publish(
        self, event_type: enum.Enum, data: Any = None, source: str | None = None
    ) -> str: ...

    def subscribe(
        self,
        event_type: enum.Enum | EventKey[Any],
        handler: Callable[[Event[Any]], Any],
        *,
        weak: bool | None = None,
        filter: Callable[[Event[Any]], bool] | None = None,
        once: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float | None = None,
        slow_threshold: float | None = None,
        max_failures: int | None = None,
    ) -> Subscription: ...

    def get_signal(self, event_type: enum.Enum | EventKey[Any]) -> blinker.Signal: ...

    def attach_sink(
        self, sink: Sink, *, replay_from: Callable[[History], list[Event[Any]]] | None = None
    ) -> tuple[Subscription, list[Event[Any]]]: ...

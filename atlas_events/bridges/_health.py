"""A bridge's state, counters and ``BRIDGE_*`` announcements, shared by every transport."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias, TypedDict

import attrs

from .. import Event, EventBus, EventType, SinkStats
from .._logging import log_extra
from ..exceptions import BusClosedError

__all__ = [
    "LOCAL_ONLY_TYPES",
    "Announcer",
    "BridgeCounters",
    "BridgeHealth",
    "BridgeSinkStats",
    "BridgeState",
    "BridgeStatus",
    "DeadLetter",
    "EventsLost",
    "HandlerExit",
    "LinkState",
    "new_counters",
]

log = logging.getLogger("atlas_events.bridges")

BridgeState: TypeAlias = Literal["stopped", "connecting", "connected", "disconnected", "failed"]
"""``failed``: a bridge thread stopped on an unexpected error (see ``health()["failure"]``)."""

LOCAL_ONLY_TYPES: Final = frozenset(
    {
        EventType.HANDLER_ERROR,
        EventType.BRIDGE_CONNECTED,
        EventType.BRIDGE_DISCONNECTED,
        EventType.BRIDGE_RECONNECTED,
        EventType.BRIDGE_FAILED,
        EventType.BRIDGE_DEAD_LETTERED,
        EventType.BRIDGE_EVENTS_LOST,
        EventType.BRIDGE_HANDLER_EXIT,
    }
)
"""Types a bridge never sends unless listed in ``types`` explicitly."""


class BridgeCounters(TypedDict):
    """Every counter a bridge keeps, each an event count since the bridge object was built.

    The one definition: :class:`BridgeHealth` and :class:`BridgeSinkStats`
    extend it and :func:`new_counters` builds the live store from it.
    """

    disconnects: int  # link losses
    reconnects: int  # link recoveries
    sent: int  # events the broker acknowledged
    send_errors: int  # events the broker refused (dropped)
    rejected: int  # events that could not be encoded (dropped)
    abandoned: int  # events still unsent when the bridge stopped
    outbox_dropped: int  # events a full outbox discarded (drop_* policies)
    received: int  # entries read from the broker
    delivered: int  # remote events published on the bus
    duplicates: int  # redelivered events dropped by the de-dup window
    own_skipped: int  # this node's own entries, skipped
    dead_lettered: int  # entries copied to the dead-letter stream (any reason)
    poisoned: int  # of those: delivered more than max_deliveries times
    trimmed: int  # events the broker trimmed before this node handled them
    gaps: int  # sequence numbers an origin skipped, as seen by the de-dup window
    dispatch_errors: int  # remote events whose local dispatch raised
    handler_exits: int  # of those: a BaseException (SystemExit...) from a handler


_COUNTERS: Final = tuple(BridgeCounters.__annotations__)
_DERIVED: Final = frozenset({"duplicates", "gaps", "outbox_dropped"})  # kept where they arise


def new_counters() -> dict[str, int]:
    """A zeroed live counter store (the counters kept by the bridge itself)."""
    return dict.fromkeys((c for c in _COUNTERS if c not in _DERIVED), 0)


class BridgeHealth(BridgeCounters):
    """What a bridge's ``health()`` reports: its link state and :class:`BridgeCounters`."""

    state: BridgeState
    connected: bool
    node_id: str
    namespace: str
    stream: str
    url: str
    down_for: float | None
    last_error: str | None
    failure: str | None
    outbox_depth: int
    outbox_capacity: int
    outbox_policy: str
    in_flight: int


class BridgeSinkStats(SinkStats, total=False):
    """The bridge's entry in ``bus.stats()["sinks"]`` (``kind == "redis-bridge"``).

    ``depth``/``capacity``/``dropped``/``policy`` describe the outbox and
    ``delivered`` counts events written to the broker; ``counters`` holds
    every :class:`BridgeCounters` value.
    """

    state: str
    connected: bool
    counters: BridgeCounters


@attrs.frozen(slots=True)
class BridgeStatus:
    """Payload of ``BRIDGE_CONNECTED`` / ``DISCONNECTED`` / ``RECONNECTED`` / ``FAILED``.

    Attributes:
        node_id: The bridge's node id.
        namespace: Its namespace.
        url: The broker URL, password masked.
        error: Why the link went down (``BRIDGE_DISCONNECTED``) or the bridge
            failed (``BRIDGE_FAILED``).
        downtime: Seconds the link was down (``BRIDGE_RECONNECTED``).
    """

    node_id: str
    namespace: str
    url: str
    error: str | None = None
    downtime: float | None = None


@attrs.frozen(slots=True)
class DeadLetter:
    """Payload of ``BRIDGE_DEAD_LETTERED``: an entry the node gave up on.

    Attributes:
        node_id: The node that dead-lettered it.
        entry_id: The broker's id of the entry (a Redis stream id).
        reason: ``"poison"`` (delivered more than ``max_deliveries`` times),
            or a :class:`~atlas_events.exceptions.CodecError` reason
            (``"malformed"``, ``"undecodable"``...).
        error: What went wrong, in words.
        deliveries: How often the broker had delivered it to this node.
    """

    node_id: str
    entry_id: str
    reason: str
    error: str
    deliveries: int


@attrs.frozen(slots=True)
class EventsLost:
    """Payload of ``BRIDGE_EVENTS_LOST``: events the broker trimmed before this node read them.

    Attributes:
        node_id: The node that lost them.
        stream: The stream they were trimmed from.
        count: How many (exact, from the consumer group's counters).
        total: The bridge's ``trimmed`` counter after this loss.
    """

    node_id: str
    stream: str
    count: int
    total: int


@attrs.frozen(slots=True)
class HandlerExit:
    """Payload of ``BRIDGE_HANDLER_EXIT``: a handler raised a ``BaseException`` on a bridge thread.

    Attributes:
        node_id: The bridge's node id.
        event_id: The event whose handler raised it.
        error: The exception, as ``repr()``.
    """

    node_id: str
    event_id: str
    error: str


_SOURCE: Final = "atlas_events.bridges"


class Announcer:
    """Publishes ``BRIDGE_*`` events on the bus; a failing handler never reaches the caller.

    A handler of an announcement runs on the bridge thread that announces.
    An ``Exception`` it raises is the bus's business (it is logged, and
    counted in ``dispatch_errors``); a ``BaseException`` (``SystemExit``...)
    is contained the same way as one from a remote event's handler (see
    :func:`contain_exit`), so no announcement can end a bridge thread.
    """

    __slots__ = ("bus", "counters", "node_id")

    def __init__(self, bus: EventBus, node_id: str, counters: dict[str, int]) -> None:
        self.bus = bus
        self.node_id = node_id
        self.counters = counters

    def announce(self, event_type: EventType, payload: Any) -> None:
        """Publish ``payload`` as ``event_type`` (nothing if the bus is closed)."""
        try:
            self.bus.publish(event_type, payload, source=_SOURCE)
        except BusClosedError:
            pass
        except Exception:
            self.counters["dispatch_errors"] += 1
            log.exception(
                "bridge %s: a handler of %s failed",
                self.node_id,
                event_type,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )
        except BaseException as exc:
            self.contain_exit(exc, f"<{event_type.value}>")

    def contain_exit(
        self, exc: BaseException, event_id: str, *, event: Event[Any] | None = None
    ) -> None:
        """Record a ``BaseException`` a handler raised on a bridge thread.

        It is counted (``dispatch_errors``, ``handler_exits``), logged at
        ERROR with its traceback and announced as ``BRIDGE_HANDLER_EXIT``;
        the thread goes on. (It cannot reach the thread that owns the
        bridge, and ending the bridge thread would only stop the node from
        receiving; subscribe to ``BRIDGE_HANDLER_EXIT`` to act on it.)

        Args:
            exc: What the handler raised.
            event_id: The event's id (``<type>`` for an announcement).
            event: The remote event being handled, if any (its fields go
                into the log record).
        """
        self.counters["dispatch_errors"] += 1
        self.counters["handler_exits"] += 1
        log.error(
            "bridge %s: a handler of event %s raised %r; the bridge goes on",
            self.node_id,
            event_id,
            exc,
            exc_info=exc,
            extra=log_extra(event, bus=self.bus.name, atlas_node=self.node_id),
        )
        payload = HandlerExit(self.node_id, event_id, repr(exc))
        try:
            self.bus.publish(EventType.BRIDGE_HANDLER_EXIT, payload, source=_SOURCE)
        except BaseException:
            log.exception(
                "bridge %s: a handler of bridge.handler_exit failed",
                self.node_id,
                extra=log_extra(event, bus=self.bus.name, atlas_node=self.node_id),
            )


class LinkState:
    """The link state machine (``connecting`` -> ``connected`` <-> ``disconnected``), thread-safe.

    Announces each transition once, whichever thread sees it first.
    """

    __slots__ = (
        "_announcer",
        "_lock",
        "counters",
        "down_since",
        "failure",
        "halt",
        "last_error",
        "namespace",
        "state",
        "url",
    )

    def __init__(
        self, announcer: Announcer, namespace: str, url: str, counters: dict[str, int]
    ) -> None:
        self._announcer = announcer
        self._lock = threading.Lock()
        self.namespace = namespace
        self.url = url
        self.counters = counters
        self.state: BridgeState = "stopped"
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.failure: str | None = None
        self.halt = threading.Event()

    @property
    def node_id(self) -> str:
        return self._announcer.node_id

    @property
    def bus_name(self) -> str:
        """The name of the bus the bridge serves (for log records)."""
        return self._announcer.bus.name

    def status(self, error: str | None = None, downtime: float | None = None) -> BridgeStatus:
        return BridgeStatus(self.node_id, self.namespace, self.url, error, downtime)

    def set(self, state: BridgeState) -> None:
        with self._lock:
            self.state = state
            if state != "disconnected":
                self.down_since = None
            if state == "connecting":
                self.failure = None

    def down(self, exc: BaseException) -> None:
        """The link failed: record the error; announce if it was up."""
        error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.last_error = error
            if self.state != "connected":
                return
            self.state = "disconnected"
            self.down_since = time.monotonic()
            self.counters["disconnects"] += 1
        log.warning(
            "bridge %s: lost the broker (%s); reconnecting",
            self.node_id,
            error,
            extra=log_extra(bus=self.bus_name, atlas_node=self.node_id),
        )
        self._announcer.announce(EventType.BRIDGE_DISCONNECTED, self.status(error=error))

    def lost_quietly(self) -> None:
        """A connection was found dead and replaced while idle: the link was lost meanwhile."""
        if self.state == "connected" and not self.halt.is_set():
            self.down(ConnectionError("the broker closed the connection (found while idle)"))

    def up(self) -> None:
        """The link works: announce ``CONNECTED`` or ``RECONNECTED`` once."""
        if self.state == "connected":
            return
        with self._lock:
            if self.state not in ("connecting", "disconnected") or self.halt.is_set():
                return
            first = self.state == "connecting"
            down = self.down_since
            downtime = None if down is None else time.monotonic() - down
            self.state = "connected"
            self.down_since = None
            if not first:
                self.counters["reconnects"] += 1
        if first:
            log.info(
                "bridge %s: connected to %s",
                self.node_id,
                self.url,
                extra=log_extra(bus=self.bus_name, atlas_node=self.node_id),
            )
            self._announcer.announce(EventType.BRIDGE_CONNECTED, self.status())
        else:
            log.warning(
                "bridge %s: reconnected after %.2fs",
                self.node_id,
                downtime or 0.0,
                extra=log_extra(bus=self.bus_name, atlas_node=self.node_id),
            )
            self._announcer.announce(EventType.BRIDGE_RECONNECTED, self.status(downtime=downtime))

    def fail(self, thread: str, exc: BaseException) -> None:
        """A bridge thread ended on ``exc``: state ``failed``, log, ``BRIDGE_FAILED``."""
        error = f"{thread} thread stopped: {type(exc).__name__}: {exc}"
        with self._lock:
            self.state = "failed"
            self.failure = error
            self.last_error = error
            self.down_since = None
        log.critical(
            "bridge %s: %s",
            self.node_id,
            error,
            exc_info=exc,
            extra=log_extra(bus=self.bus_name, atlas_node=self.node_id),
        )
        self._announcer.announce(EventType.BRIDGE_FAILED, self.status(error=error))

    def guard(self, thread: str, target: Callable[[], None]) -> Callable[[], None]:
        """Wrap a thread's ``target`` so that no exception ends it unannounced."""

        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self.fail(thread, exc)

        return run

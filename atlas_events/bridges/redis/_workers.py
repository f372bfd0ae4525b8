"""The bridge's threads: a sender, and a reader unless send-only, started and stopped together."""

from __future__ import annotations

import threading

from ... import EventBus
from .._health import Announcer, LinkState
from .._inbound import Inbound
from .._outbox import Outbox
from ._config import RedisBridgeConfig
from ._reader import Reader
from ._sender import Sender
from ._transport import interrupt, make_backoff

__all__ = ["Workers"]


class Workers:
    """The sender and reader threads of one bridge and the events that steer them.

    A :class:`~atlas_events.bridges.redis.RedisBridge` builds one and keeps
    it across restarts: each :meth:`start` makes a new :class:`Sender` and
    :class:`Reader`; the reader resumes after the last entry the previous
    one acknowledged.

    Attributes:
        ready: Set once the consumer group exists (send-only: once connected).
        stopping: Set by :meth:`stop`: the sender drains the outbox, then ends.
    """

    __slots__ = (
        "_last_handled",
        "announcer",
        "bus",
        "config",
        "counters",
        "inbound",
        "incarnation",
        "link",
        "node_id",
        "outbox",
        "reader",
        "ready",
        "sender",
        "stopping",
        "threads",
    )

    def __init__(
        self,
        config: RedisBridgeConfig,
        bus: EventBus,
        node_id: str,
        incarnation: str,
        outbox: Outbox,
        inbound: Inbound,
        link: LinkState,
        announcer: Announcer,
        counters: dict[str, int],
    ) -> None:
        self.config = config
        self.bus = bus
        self.node_id = node_id
        self.incarnation = incarnation
        self.outbox = outbox
        self.inbound = inbound
        self.link = link
        self.announcer = announcer
        self.counters = counters
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sender: Sender | None = None
        self.reader: Reader | None = None
        self._last_handled: bytes | None = None

    @property
    def in_flight(self) -> int:
        """Events of the batch the sender is writing now."""
        sender = self.sender
        return 0 if sender is None else sender.in_flight

    def reset(self) -> None:
        """Clear the events a previous run set (before :meth:`start`)."""
        self.stopping.clear()
        self.ready.clear()

    def start(self) -> None:
        """Make a sender (and a reader, unless send-only) and start their threads."""
        config, link, backoff = self.config, self.link, make_backoff(self.config)
        self.sender = Sender(
            config,
            self.node_id,
            self.incarnation,
            self.outbox,
            link,
            self.counters,
            backoff,
            self.stopping,
            None if config.receive else self.ready,  # send-only: ready once connected
        )
        self.threads = [
            threading.Thread(
                target=link.guard("sender", self.sender.run),
                name=f"atlas-redis-send[{self.node_id}]",
                daemon=True,
            )
        ]
        self.reader = None
        if config.receive:
            self.reader = Reader(
                config,
                self.bus,
                self.node_id,
                self.inbound,
                link,
                self.announcer,
                self.counters,
                backoff,
                self.ready,
            )
            self.reader.last_handled = self._last_handled
            self.threads.append(
                threading.Thread(
                    target=link.guard("reader", self.reader.run),
                    name=f"atlas-redis-read[{self.node_id}]",
                    daemon=True,
                )
            )
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float) -> None:
        """Let the sender drain for up to ``timeout`` seconds, then halt both threads and join them.

        The link's ``halt`` is set on the way (the caller clears it before
        the next :meth:`start`).
        """
        sender, reader = (*self.threads, None, None)[:2]
        self.stopping.set()
        self.outbox.wake.set()
        if sender is not None:
            sender.join(max(timeout, 0.0))
        self.link.halt.set()
        self.outbox.wake.set()
        if sender is not None:
            sender.join(2.0)
        if self.reader is not None:
            interrupt(self.reader.client)  # wakes a blocked XREADGROUP at once
        if reader is not None:
            reader.join(self.config.block_ms / 1000 + 2.0)
        if self.reader is not None:
            self._last_handled = self.reader.last_handled
        self.threads = []

"""The reader thread: reads the stream through the node's consumer group and dispatches it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

from redis.backoff import AbstractBackoff
from redis.exceptions import ResponseError

from ... import EventBus, EventType
from ...exceptions import BusClosedError, CodecError
from .._health import Announcer, DeadLetter, EventsLost, LinkState
from .._inbound import Inbound
from ._config import RedisBridgeConfig
from ._group import NO_GROUP, ConsumerGroup
from ._sender import ENTRY_FIELD
from ._transport import LINK_ERRORS, Client, close, command, open_client

__all__ = ["Reader"]

from ..._logging import log_extra

log = logging.getLogger("atlas_events.bridges.redis")

_ACCOUNT_EVERY: Final = 1.0  # seconds between trimming-loss counts while running
_PENDING_PAGE: Final = 500

# (entry id, fields, reason, error, deliveries)
_Dead = tuple[bytes, list[bytes], str, str, int]


class Reader:
    """Reads, dispatches and acknowledges; counts and dead-letters what it cannot deliver.

    On every (re)connection it creates the group if needed, counts the
    entries trimmed behind its cursor (exactly, from the group's counters),
    and then re-reads this node's pending entries one at a time: each is
    claimed with ``XCLAIM ... RETRYCOUNT n`` just before it is dispatched,
    where ``n`` is its delivery count (``XPENDING``) plus one, decided once
    per bridge object (so a claim repeated after a lost reply does not
    count twice). An entry whose count passes ``max_deliveries`` is
    dead-lettered instead (reason ``"poison"``), so an entry that kills the
    process cannot stop the node for good. New entries are then read in
    batches; a batch's acknowledgements and dead letters travel in the
    pipeline of the next read (one round trip per batch).
    """

    def __init__(
        self,
        config: RedisBridgeConfig,
        bus: EventBus,
        node_id: str,
        inbound: Inbound,
        link: LinkState,
        announcer: Announcer,
        counters: dict[str, int],
        backoff: AbstractBackoff,
        ready: threading.Event,
    ) -> None:
        self.config = config
        self.bus = bus
        self.node_id = node_id
        self.inbound = inbound
        self.link = link
        self.announcer = announcer
        self.counters = counters
        self.backoff = backoff
        self.ready = ready
        self.client: Client | None = None
        self.group: ConsumerGroup | None = None
        self.key = config.stream_key
        self.last_handled: bytes | None = None  # newest entry this object acknowledged
        self._acks: list[bytes] = []
        self._dead: list[_Dead] = []
        self._next_account = 0.0
        self._claims: dict[bytes, int] = {}  # pending entry id -> the delivery it is

    # ------------------------------------------------------------- the loop

    def run(self) -> None:
        """Thread target: read until halted or the bus closes."""
        halt = self.link.halt
        failures = 0
        try:
            while not halt.is_set() and not self.bus.closed:
                try:
                    if self.client is None:
                        self.client = open_client(
                            self.config,
                            reader=True,
                            name=f"atlas-bridge:{self.node_id}:read",
                            on_reconnect=self.link.lost_quietly,
                        )
                        self.group = ConsumerGroup(self.client, self.config, self.node_id)
                    self._start_session(self.client)
                    failures = 0
                    while self._step(self.client):
                        pass
                    return
                except BusClosedError:
                    return
                except Exception as exc:  # link, refused command, a bug: say it, back off
                    if halt.is_set():
                        return
                    self._failed(exc)
                    if halt.wait(self.backoff.compute(failures)):
                        return
                    failures += 1
        finally:
            self._flush()
            close(self.client)

    def _failed(self, exc: Exception) -> None:
        self._acks.clear()  # the pending-entry pass re-acknowledges what was handled
        self._dead.clear()
        if isinstance(exc, LINK_ERRORS):
            self.link.down(exc)
            return
        self.link.last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP"):
            log.warning(
                "bridge %s: consumer group vanished; re-creating it",
                self.node_id,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )
        elif isinstance(exc, ResponseError):
            log.error(
                "bridge %s: the broker refused a read: %s",
                self.node_id,
                exc,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )
        else:
            log.exception(
                "bridge %s: reader failed; retrying",
                self.node_id,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )

    def _start_session(self, client: Client) -> None:
        """Group, trimming count, pending entries: what every (re)connection does first."""
        group = self.group
        if group is None:  # pragma: no cover - set with the client
            raise RuntimeError("no consumer group")
        resume = None if self.last_handled is None else self.last_handled.decode()
        replaying = self.config.replay_last or self.config.replay_from
        if not group.create(client, resume) and resume is None and replaying:
            log.info(
                "bridge %s: group exists, resuming its cursor (replay ignored)",
                self.node_id,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )
        self._count_trimmed(group.account(client))
        self.ready.set()
        self.link.up()
        self._recover_pending(client)

    # ------------------------------------------------------- pending entries

    def _recover_pending(self, client: Client) -> None:
        """Acknowledge what this object already handled; re-deliver the rest one at a time."""
        group = self.node_id
        if self.last_handled is not None:
            while True:
                page = command(
                    client, "XPENDING", self.key, group, "-", self.last_handled, _PENDING_PAGE
                )
                if not page:
                    break
                command(client, "XACK", self.key, group, *[p[0] for p in page])
                if len(page) < _PENDING_PAGE:
                    break
        key = self.key
        peek = command(client, "XPENDING", key, group, "-", "+", 1)
        while peek and not self.link.halt.is_set():
            entry_id = peek[0][0]
            # The delivery this is, as this object decided it the first time
            # it saw the entry (a retry after a lost reply sets the same).
            deliveries = self._claims.setdefault(entry_id, int(peek[0][3]) + 1)
            pipe = client.pipeline(transaction=False)
            self._queue_finish(pipe)
            command(pipe, "XCLAIM", key, group, group, 0, entry_id, "RETRYCOUNT", deliveries)
            command(pipe, "XPENDING", key, group, b"(" + entry_id, "+", 1)
            replies = pipe.execute(raise_on_error=False)
            self._check_finish(replies[:-2])
            for reply in replies[-2:]:
                if isinstance(reply, Exception):
                    raise reply
            claimed, peek = replies[-2], replies[-1]
            if claimed:
                self._handle(entry_id, claimed[0][1], deliveries)
            else:  # trimmed while pending: XCLAIM dropped it from the group
                self._lost_pending(1)
            del self._claims[entry_id]
        pipe = client.pipeline(transaction=False)
        if self._queue_finish(pipe):
            self._check_finish(pipe.execute(raise_on_error=False))

    # ------------------------------------------------------------ new entries

    def _step(self, client: Client) -> bool:
        """Acknowledge the last batch, read and handle the next; ``False`` to stop."""
        if self.link.halt.is_set() or self.bus.closed:
            return False
        group = self.group
        pipe = client.pipeline(transaction=False)
        finishing = self._queue_finish(pipe)
        accounting = group is not None and time.monotonic() >= self._next_account
        if accounting and group is not None:
            group.account(pipe)
        config = self.config
        command(pipe,
            "XREADGROUP", "GROUP", self.node_id, self.node_id, "COUNT", config.batch_size,
            "BLOCK", config.block_ms, "STREAMS", self.key, ">",
        )  # fmt: skip
        replies = pipe.execute(raise_on_error=False)
        self._check_finish(replies[:finishing])
        if accounting:
            self._count_trimmed(replies[finishing])
        reply = replies[-1]
        if isinstance(reply, Exception):
            raise reply
        self.link.up()
        if reply:
            self._handle_batch(reply[0][1])
        return True

    def _handle_batch(self, entries: list[tuple[bytes, list[bytes] | None]]) -> None:
        """Dispatch a batch of first deliveries; the usual entries without a call each."""
        # The loop every received event goes through: locals, and the odd
        # entries (malformed, undecodable) handed to _handle.
        handle = self.inbound.handle
        own = self.inbound.own_prefix
        acks = self._acks
        counters = self.counters
        counters["received"] += len(entries)
        for entry_id, fields in entries:
            if fields is not None and len(fields) == 2 and fields[0] == ENTRY_FIELD:
                raw = fields[1]
                if raw.startswith(own):  # this node's own event: no need to decode it
                    counters["own_skipped"] += 1
                else:
                    error = handle(raw)
                    if error is not None:
                        self._dead_letter(entry_id, fields, error, 1)
                acks.append(entry_id)
                self.last_handled = entry_id
            else:
                self.counters["received"] -= 1  # counted again by _handle
                self._handle(entry_id, fields, 1)

    # ------------------------------------------------------------ one entry

    def _handle(self, entry_id: bytes, fields: list[bytes] | None, deliveries: int) -> None:
        """Dispatch one entry (or dead-letter it) and queue its acknowledgement."""
        if fields is None:  # trimmed (or deleted) while pending
            self._lost_pending(1)
        else:
            self.counters["received"] += 1
            dead = self._verdict(entry_id, fields, deliveries)
            if dead is not None:
                self._dead.append((entry_id, fields, *dead, deliveries))
        self._acks.append(entry_id)
        self.last_handled = entry_id

    def _verdict(
        self, entry_id: bytes, fields: list[bytes], deliveries: int
    ) -> tuple[str, str] | None:
        """Dispatch the entry; ``(reason, error)`` if it is to be dead-lettered instead.

        Raises:
            BusClosedError: The bus closed; the entry stays pending.
        """
        limit = self.config.max_deliveries
        if deliveries > limit:
            self.counters["poisoned"] += 1
            return "poison", (
                f"delivered {deliveries} times without being acknowledged "
                f"(max_deliveries={limit}); its handling may kill the process"
            )
        if len(fields) != 2 or fields[0] != ENTRY_FIELD:
            return "malformed", f"no {ENTRY_FIELD!r} field"
        error = self.inbound.handle(fields[1])
        if error is None:
            return None
        error.entry_id = entry_id.decode()
        return error.reason, str(error)

    def _dead_letter(
        self, entry_id: bytes, fields: list[bytes], error: CodecError, deliveries: int
    ) -> None:
        error.entry_id = entry_id.decode()
        self._dead.append((entry_id, fields, error.reason, str(error), deliveries))

    def _lost_pending(self, count: int) -> None:
        self._count_trimmed(count, pending=True)

    def _count_trimmed(self, reply: Any, *, pending: bool = False) -> None:
        """Count and announce ``reply`` entries lost to trimming (an account reply or a count)."""
        self._next_account = time.monotonic() + _ACCOUNT_EVERY
        if isinstance(reply, Exception):
            log.warning(
                "bridge %s: could not count trimmed entries: %s",
                self.node_id,
                reply,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )
            return
        lost = int(reply)
        if lost == NO_GROUP:
            raise ResponseError("NOGROUP the consumer group vanished")
        if lost <= 0:
            return
        self.counters["trimmed"] += lost
        total = self.counters["trimmed"]
        where = "while pending" if pending else "before this node read them"
        log.warning(
            "bridge %s: %d events were trimmed from %s %s (maxlen=%d)",
            self.node_id,
            lost,
            self.key,
            where,
            self.config.maxlen,
            extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
        )
        self.announcer.announce(
            EventType.BRIDGE_EVENTS_LOST, EventsLost(self.node_id, self.key, lost, total)
        )

    # ------------------------------------------------- acks and dead letters

    def _queue_finish(self, pipe: Any) -> int:
        """Queue the dead letters and acknowledgements owed; return how many commands."""
        config = self.config
        for entry_id, fields, reason, error, deliveries in self._dead:
            command(pipe,
                "XADD", config.dead_letter_key, "MAXLEN", "~", config.dead_letter_maxlen, "*",
                "x-reason", reason, "x-error", error[:1000], "x-id", entry_id,
                "x-node", self.node_id, "x-deliveries", deliveries, *fields,
            )  # fmt: skip
        if self._acks:
            command(pipe, "XACK", self.key, self.node_id, *self._acks)
        return len(self._dead) + (1 if self._acks else 0)

    def _check_finish(self, replies: list[Any]) -> None:
        """The queued commands were applied: count, log and announce the dead letters."""
        dead, self._dead = self._dead, []
        self._acks = []
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            log.error(
                "bridge %s: the broker refused %d acks/dead letters: %s",
                self.node_id,
                len(errors),
                errors[0],
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )
        for entry_id, _fields, reason, error, deliveries in dead:
            self.counters["dead_lettered"] += 1
            text = entry_id.decode()
            log.warning(
                "bridge %s: entry %s dead-lettered (%s, %d deliveries): %s",
                self.node_id,
                text,
                reason,
                deliveries,
                error,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id, atlas_entry_id=text),
            )
            self.announcer.announce(
                EventType.BRIDGE_DEAD_LETTERED,
                DeadLetter(self.node_id, text, reason, error, deliveries),
            )

    def _flush(self) -> None:
        """Send the acknowledgements still owed (best effort: the thread is ending)."""
        client = self.client
        if client is None or not (self._acks or self._dead):
            return
        try:
            pipe = client.pipeline(transaction=False)
            self._queue_finish(pipe)
            self._check_finish(pipe.execute(raise_on_error=False))
        except (*LINK_ERRORS, ResponseError) as exc:
            log.info(
                "bridge %s: could not acknowledge the last entries: %s",
                self.node_id,
                exc,
                extra=log_extra(bus=self.bus.name, atlas_node=self.node_id),
            )

"""The sender thread: takes batches from the outbox and appends them with pipelined ``XADD``."""

from __future__ import annotations

import logging
import threading
from typing import Protocol, cast

from redis.backoff import AbstractBackoff
from redis.exceptions import ResponseError

from ..._event import Event
from ...exceptions import CodecError
from .._health import LinkState
from .._outbox import Outbox, OutboxItem
from ._config import RedisBridgeConfig
from ._transport import LINK_ERRORS, Client, close, open_client

__all__ = ["ENTRY_FIELD", "Sender"]

log = logging.getLogger("atlas_events.bridges.redis")

ENTRY_FIELD = b"e"
"""The one field of a stream entry: the encoded envelope."""


class _Queue(Protocol):
    def execute_command(self, *args: bytes | str | int) -> object: ...


class Sender:
    """Moves events from the outbox to the stream, in order, retrying a batch until it lands.

    A batch whose write fails on the link is written again once the link is
    back (at-least-once; receivers drop the duplicates). Replies that
    refuse an entry (``OOM``, ``READONLY``...) drop that event and count it
    in ``send_errors``.
    """

    def __init__(
        self,
        config: RedisBridgeConfig,
        node_id: str,
        incarnation: str,
        outbox: Outbox,
        link: LinkState,
        counters: dict[str, int],
        backoff: AbstractBackoff,
        stopping: threading.Event,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.incarnation = incarnation
        self.outbox = outbox
        self.link = link
        self.counters = counters
        self.backoff = backoff
        self.stopping = stopping
        self.client: Client | None = None
        self.in_flight = 0

    # ------------------------------------------------------------- the loop

    def run(self) -> None:
        """Thread target: send until halted, or until stopping with an empty outbox."""
        batch: list[bytes] = []
        try:
            self.client = self._connect()
            while self.client is not None and not self.link.halt.is_set():
                if not batch:
                    batch = self._next_batch()
                    if not batch:
                        finishing = self.stopping.is_set() or self.outbox.closed
                        if finishing and not len(self.outbox):
                            break
                        continue
                self.in_flight = len(batch)
                if self._write(self.client, batch):
                    batch = []
                    self.link.up()
                elif not self._reconnect():
                    break
        finally:
            self._abandon(batch)

    def _connect(self) -> Client | None:
        """Connect, retrying with backoff; ``None`` if the bridge halts first."""
        failures = 0
        while not self.link.halt.is_set():
            try:
                return open_client(
                    self.config,
                    reader=False,
                    name=f"atlas-bridge:{self.node_id}:send",
                    on_reconnect=self.link.lost_quietly,
                )
            except (*LINK_ERRORS, ResponseError) as exc:
                self.link.down(exc)
                if self.link.halt.wait(self.backoff.compute(failures)):
                    break
                failures += 1
        return None

    def _reconnect(self) -> bool:
        """Ping with backoff until the broker answers; ``False`` if the bridge halts first."""
        failures = 0
        client = self.client
        while client is not None:
            if self.link.halt.wait(self.backoff.compute(failures)):
                return False
            failures += 1
            try:
                client.ping()
                return True
            except (*LINK_ERRORS, ResponseError) as exc:
                self.link.last_error = f"{type(exc).__name__}: {exc}"
        return False

    def _next_batch(self) -> list[bytes]:
        """Up to ``batch_size`` encoded events; waits up to 0.5 s for the first."""
        items = self.outbox.take(self.config.batch_size)
        if not items:
            outbox = self.outbox
            outbox.wake.clear()
            outbox.idle = True
            if not len(outbox) and not self.stopping.is_set():
                outbox.wake.wait(0.5)
            outbox.idle = False
            return []
        return self._encode(items)

    def _encode(self, items: list[OutboxItem]) -> list[bytes]:
        encode = self.config.codec.encode
        out: list[bytes] = []
        for seq, ev, parts in items:
            try:
                out.append(
                    encode(
                        ev, origin=self.node_id, incarnation=self.incarnation, seq=seq, parts=parts
                    )
                )
            except CodecError as exc:
                self._reject(ev, exc)
        return out

    def _reject(self, ev: Event[object], exc: CodecError) -> None:
        self.counters["rejected"] += 1
        log.error("bridge %s: event %s not sent: %s", self.node_id, ev.id, exc)

    def _write(self, client: Client, batch: list[bytes]) -> bool:
        """One pipelined ``XADD`` per event; ``False`` if the link failed (nothing counted)."""
        key, maxlen = self.config.stream_key, self.config.maxlen
        pipe = client.pipeline(transaction=False)
        queue = cast("_Queue", pipe).execute_command
        for payload in batch:
            queue("XADD", key, "MAXLEN", "~", maxlen, "*", ENTRY_FIELD, payload)
        try:
            replies = pipe.execute(raise_on_error=False)
        except LINK_ERRORS as exc:
            self.link.down(exc)
            return False
        # A cluster pipeline returns a node's link failure as a reply: the
        # batch is written again (receivers drop the copies that landed).
        lost = next((r for r in replies if isinstance(r, LINK_ERRORS)), None)
        if lost is not None:
            self.link.down(lost)
            return False
        errors = [r for r in replies if isinstance(r, Exception)]
        self.counters["sent"] += len(batch) - len(errors)
        if errors:
            self.counters["send_errors"] += len(errors)
            log.error(
                "bridge %s: the broker refused %d of %d events (dropped): %s",
                self.node_id,
                len(errors),
                len(batch),
                errors[0],
            )
        return True

    def _abandon(self, batch: list[bytes]) -> None:
        """Count what the sender leaves unsent when it stops, and close its client."""
        left = len(batch) + self.outbox.clear()
        if left:
            self.counters["abandoned"] += left
            log.warning("bridge %s: stopped with %d events unsent", self.node_id, left)
        self.in_flight = 0
        close(self.client)

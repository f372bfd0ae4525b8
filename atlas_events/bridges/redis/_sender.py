"""The sender thread: takes batches from the outbox and appends them with pipelined ``XADD``."""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from redis.backoff import AbstractBackoff
from redis.exceptions import ResponseError

from ... import Event
from ...exceptions import CodecError
from .._health import LinkState
from .._outbox import Outbox, OutboxItem
from ._cluster import wait_replicas
from ._config import RedisBridgeConfig
from ._transport import LINK_ERRORS, Client, close, open_client

__all__ = ["ENTRY_FIELD", "Sender"]

log = logging.getLogger("atlas_events.bridges.redis")

ENTRY_FIELD = b"e"
"""The one field of a stream entry: the encoded envelope."""


# One EVALSHA per batch: every event is still its own XADD (MAXLEN ~), run
# by the server in order. Saves the client a reply (and redis-py's Python
# reply handling, ~6 us) per event: measured in docs/cross-process.md, "Performance".
# An XADD refused inside (OOM, READONLY) is counted and the rest go on.
# ARGV: maxlen, payload... Returns {added} or {added, first error}.
_APPEND: Final = """
local key, maxlen, added, err = KEYS[1], ARGV[1], 0, nil
for i = 2, #ARGV do
  local r = redis.pcall('XADD', key, 'MAXLEN', '~', maxlen, '*', 'e', ARGV[i])
  if type(r) == 'table' and r.err then err = err or r.err else added = added + 1 end
end
if err then return {added, err} end
return {added}
"""


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
        ready: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.incarnation = incarnation
        self.outbox = outbox
        self.link = link
        self.counters = counters
        self.backoff = backoff
        self.stopping = stopping
        self.ready = ready  # set once connected (a send-only bridge has no reader to set it)
        self.client: Client | None = None
        self.in_flight = 0
        self._append: Any = None  # the batch script, registered on first use

    # ------------------------------------------------------------- the loop

    def run(self) -> None:
        """Thread target: send until halted, or until stopping with an empty outbox."""
        batch: list[bytes] = []
        try:
            self.client = self._connect()
            if self.client is not None and self.ready is not None:
                self.ready.set()
                self.link.up()
            while self.client is not None and not self.link.halt.is_set():
                if not batch and self.link.state == "disconnected":
                    # Leave the events in the outbox (where its policy applies)
                    # until the broker answers again.
                    if not self._reconnect():
                        break
                    self.link.up()
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
                    self.in_flight = 0
                    self.link.up()
                elif not self._reconnect(len(batch)):
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
                if self._give_up(failures):
                    break
                failures += 1
        return None

    def _give_up(self, failures: int, holding: int = 0) -> bool:
        """Wait one backoff delay; whether to stop trying: halted, or stopping with nothing to send.

        ``holding``: events of a batch in hand. A stop ends the wait at once:
        with nothing to drain, ``stop(timeout)`` does not wait for an
        unreachable broker.
        """
        delay = self.backoff.compute(failures)
        (self.link.halt if self.stopping.is_set() else self.stopping).wait(delay)
        finishing = self.stopping.is_set() or self.outbox.closed
        return self.link.halt.is_set() or (finishing and not holding and not len(self.outbox))

    def _reconnect(self, holding: int = 0) -> bool:
        """Ping with backoff until the broker answers; ``False`` if the sender gives up first."""
        failures = 0
        client = self.client
        while client is not None:
            if self._give_up(failures, holding):
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
        """Append a batch with one ``EVALSHA``; ``False`` if the link failed (nothing counted)."""
        script = self._append
        if script is None:
            script = self._append = client.register_script(_APPEND)
        try:
            reply = script(keys=[self.config.stream_key], args=[self.config.maxlen, *batch])
            if self.config.replica_acks:  # the batch counts as sent once replicated
                wait_replicas(client, self.config, self.node_id)
        except LINK_ERRORS as exc:
            self.link.down(exc)
            return False
        except ResponseError as exc:  # the script itself was refused (ACL, BUSY...)
            reply = [0, str(exc)]
        added = int(reply[0])
        self.counters["sent"] += added
        if added < len(batch):
            self.counters["send_errors"] += len(batch) - added
            error = reply[1].decode() if isinstance(reply[1], bytes) else reply[1]
            log.error(
                "bridge %s: the broker refused %d of %d events (dropped): %s",
                self.node_id,
                len(batch) - added,
                len(batch),
                error,
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

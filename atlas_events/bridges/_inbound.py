"""Turning one received wire entry into a local event: decode, de-duplicate, dispatch."""

from __future__ import annotations

import logging

from .. import EventBus
from .._logging import log_extra
from ..exceptions import BusClosedError, CodecError
from ._dedup import DedupWindow
from ._health import Announcer
from .codec import Codec

__all__ = ["Inbound"]

log = logging.getLogger("atlas_events.bridges")


class Inbound:
    """Handles received entries for one node; transport-independent.

    Args:
        bus: Where remote events are published.
        codec: The wire codec.
        dedup: The node's de-dup window.
        node_id: This node's id (its own entries are skipped).
        counters: The bridge's live counters.
        announcer: Records ``BaseException`` from handlers.

    Not thread-safe: one reader thread owns it.
    """

    __slots__ = ("_announcer", "_bus", "_check", "_counters", "_decode", "_node_id", "own_prefix")

    def __init__(
        self,
        bus: EventBus,
        codec: Codec,
        dedup: DedupWindow,
        node_id: str,
        counters: dict[str, int],
        announcer: Announcer,
    ) -> None:
        self._bus = bus
        self._decode = codec._decode
        self._check = dedup.check
        self._node_id = node_id
        self.own_prefix = codec.origin_prefix(node_id)
        """The first bytes of every entry this node wrote (see :meth:`Codec.origin_prefix`)."""
        self._counters = counters
        self._announcer = announcer

    def handle(self, raw: bytes) -> CodecError | None:
        """Dispatch the event ``raw`` carries, once; return the error if it cannot be decoded.

        The caller acknowledges the entry either way (and dead-letters it
        on an error, after setting the error's ``entry_id``). A handler's ``Exception`` counts in
        ``dispatch_errors``; its ``BaseException`` is contained too (see
        :meth:`Announcer.contain_exit`).

        Raises:
            BusClosedError: The bus closed; the entry was not handled.
        """
        counters = self._counters
        if raw.startswith(self.own_prefix):  # this node's own event: no need to decode it
            counters["own_skipped"] += 1
            return None
        try:
            origin, incarnation, seq, event = self._decode(raw)
        except CodecError as exc:
            return exc
        if origin == self._node_id:
            counters["own_skipped"] += 1
            return None
        if self._check(origin, incarnation, seq):
            return None
        try:
            self._bus.publish_event(event)
        except BusClosedError:
            raise
        except Exception as exc:  # middleware refusal, raise_handler_errors...
            counters["dispatch_errors"] += 1
            log.warning(
                "bridge %s: remote event %s failed locally: %r",
                self._node_id,
                event.id,
                exc,
                extra=log_extra(event, bus=self._bus.name, atlas_node=self._node_id),
            )
        except BaseException as exc:
            self._announcer.contain_exit(exc, event.id, event=event)
        else:
            counters["delivered"] += 1
        return None

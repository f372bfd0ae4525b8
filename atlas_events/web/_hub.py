"""One dashboard app's live state: the bus, its encoder, client slots, open streams and counters."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from importlib import resources
from typing import Any, Final

import anyio

from .._bus import EventBus
from .._redact import mask_url_credentials
from .._streams import EventStream
from ._options import DashboardOptions
from ._security import Token
from ._serialize import EventEncoder
from ._serialize import to_jsonable as _to_jsonable

__all__ = ["Hub", "incarnation_of"]

_PACKAGE: Final = "atlas_events.web"

# A cache of a derived value, not configuration: every dashboard of one bus
# (even a restarted DashboardServer in the same process) tells clients the
# same incarnation, and a bus created later never gets an earlier one's.
_INCARNATIONS: weakref.WeakKeyDictionary[EventBus, str] = weakref.WeakKeyDictionary()
_INCARNATIONS_LOCK = threading.Lock()


def incarnation_of(bus: EventBus) -> str:
    """The bus's incarnation: 16 random hex digits, fixed for the bus's lifetime.

    A bus's ``seq`` numbers start again at 1 in a new bus (a restarted
    process), so a ``seq`` means something only together with the
    incarnation it came from.
    """
    with _INCARNATIONS_LOCK:
        found = _INCARNATIONS.get(bus)
        if found is None:
            found = _INCARNATIONS[bus] = os.urandom(8).hex()
        return found


class Hub:
    """One app's live state (shared by its endpoints; thread-safe counters)."""

    def __init__(self, bus: EventBus, options: DashboardOptions) -> None:
        self.bus = bus
        self.options = options
        self.encoder = EventEncoder(
            redact=options.redact,
            max_event_bytes=options.max_event_bytes,
            cache_size=max(4096, 2 * options.client_queue),
        )
        self.token = Token(options.token)
        self.incarnation = incarnation_of(bus)
        self.streams: set[EventStream] = set()
        self.responses: set[anyio.CancelScope] = set()
        self.clients = 0
        self.connections = 0
        self.rejected = 0
        self.stalled = 0
        self.resets = 0
        self._lock = threading.Lock()
        self.index_html = resources.files(_PACKAGE).joinpath("static/index.html").read_bytes()

    @property
    def max_clients(self) -> int:
        return self.options.max_clients

    def acquire(self) -> bool:
        """Take a client slot; ``False`` (and counted) when all are taken."""
        with self._lock:
            if self.clients >= self.options.max_clients:
                self.rejected += 1
                return False
            self.clients += 1
            self.connections += 1
            return True

    def release(self, *, stalled: bool = False) -> None:
        """Give a client slot back (``stalled``: the client was dropped for not reading)."""
        with self._lock:
            self.clients -= 1
            self.stalled += stalled

    def count_reset(self) -> None:
        with self._lock:
            self.resets += 1

    def close_streams(self, grace: float = 0.5) -> None:
        """End every open SSE stream (call on the server's event loop).

        A response still unfinished ``grace`` seconds later (its client
        stopped reading, so the send is blocked) is cancelled.
        """
        for stream in list(self.streams):
            stream.close()
        if self.responses:
            asyncio.get_running_loop().call_later(grace, self._cancel_responses)

    def _cancel_responses(self) -> None:
        for cancel in list(self.responses):
            cancel.cancel()

    def health(self) -> dict[str, Any]:
        """Each health source's snapshot (an error text for a source that raised)."""
        out: dict[str, Any] = {}
        for name, source in self.options.health_sources.items():
            try:
                snapshot = dict(source.health())
                out[name] = _to_jsonable(
                    snapshot, redact=self.options.redact, max_nodes=2000, max_str=2000
                )
            except Exception as exc:  # a broken source must not break /stats
                text = f"{type(exc).__name__}: {exc}"[:300]
                if self.options.redact is not None:  # e.g. a connection URL in the message
                    text = mask_url_credentials(text, self.options.redact.mask)
                out[name] = {"state": "unknown", "error": text}
        return out

    def stats(self) -> dict[str, Any]:
        """The dashboard's own counters."""
        opts = self.options
        return {
            "clients": self.clients,
            "max_clients": opts.max_clients,
            "connections_total": self.connections,
            "rejected": self.rejected,
            "stalled_dropped": self.stalled,
            "resets": self.resets,
            "heartbeat": opts.heartbeat,
            "send_timeout": opts.send_timeout,
            "client_queue": opts.client_queue,
            "max_event_bytes": opts.max_event_bytes,
            "redacting": opts.redact is not None,
            "placeholders": self.encoder.placeholders,
            "incarnation": self.incarnation,
        }

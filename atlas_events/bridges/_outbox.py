"""The outbox: a bounded queue of outbound events between publishers and a bridge's sender."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias, get_args

from .. import Event, SinkStats
from ..exceptions import OutboxFullError
from .codec import EncodedParts

__all__ = ["POLICIES", "Outbox", "OutboxItem", "OutboxPolicy"]

OutboxPolicy: TypeAlias = Literal["drop_oldest", "drop_newest", "raise"]
"""What a full outbox does with the next event: discard the oldest, discard
the new one (both counted in ``outbox_dropped``), or refuse the publish."""

POLICIES: Final = frozenset(get_args(OutboxPolicy))

OutboxItem: TypeAlias = tuple[int, Event[Any], "EncodedParts | None"]
"""``(seq, event, parts encoded at publish time or None)``."""


class _Claim(threading.local):
    """Per publishing thread: the event its publish check admitted, not pushed yet."""

    pending: tuple[Event[Any], EncodedParts] | None = None
    reserved = False  # holds one of the outbox's reserved places ("raise" policy)


def _same_event(seen: Event[Any], ev: Event[Any]) -> bool:
    """Whether ``ev`` is ``seen`` or a copy a later middleware made without changing it."""
    return (
        seen.id == ev.id
        and seen.data is ev.data
        and seen.metadata is ev.metadata
        and seen.type is ev.type
        and seen.scope == ev.scope  # a changed scope must pass the filters again
        and ev.origin is None
    )


class Outbox:
    """A bridge's bus sink: a bounded queue of outbound events, with one lock.

    The publish check (:meth:`admit`, run as middleware on the publishing
    thread) and the enqueue (:meth:`push`, run by the bus while it records
    the event, on the same thread) are two steps. Under ``"raise"`` the
    check *reserves* a place, under the outbox lock, and the push fills it,
    so any number of publishing threads can never overfill the outbox: a
    publish either raises :class:`~atlas_events.exceptions.OutboxFullError`
    or its event is queued. A reservation whose event never reaches the
    outbox (a later middleware dropped it) is returned by that thread's
    next check. The ``drop_*`` policies decide under the same lock, so
    ``outbox_dropped`` counts exactly the events discarded.

    Args:
        name: The sink's name (the node id).
        kind: The sink's kind in ``bus.stats()``.
        capacity: Most events held.
        policy: What a full outbox does (:data:`OutboxPolicy`).
        wants: Whether a local event goes out (the types and scope filters).
        stats: Builds the sink's ``bus.stats()`` entry.
    """

    __slots__ = (
        "_claim",
        "_lock",
        "_reserved",
        "blocks",
        "capacity",
        "closed",
        "dropped",
        "idle",
        "items",
        "kind",
        "name",
        "policy",
        "seq",
        "stats_of",
        "wake",
        "wants",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        capacity: int,
        policy: OutboxPolicy,
        wants: Callable[[Event[Any]], bool],
        stats: Callable[[], SinkStats],
    ) -> None:
        self.kind = kind
        self.blocks = False
        self.name = name
        self.capacity = capacity
        self.policy = policy
        self.wants = wants
        self.stats_of = stats
        self.items: deque[OutboxItem] = deque()
        self.wake = threading.Event()
        self.idle = False
        self.closed = False
        self.dropped = 0
        self.seq = 0
        self._lock = threading.Lock()
        self._reserved = 0
        self._claim = _Claim()

    def __len__(self) -> int:
        return len(self.items)

    def reopen(self) -> None:
        """Take events again (the bridge starts)."""
        with self._lock:
            self.closed = False
            self._reserved = 0

    def admit(self, ev: Event[Any], parts: EncodedParts) -> None:
        """Publish check: remember ``parts`` for :meth:`push`; under ``"raise"``, reserve a place.

        Raises:
            OutboxFullError: The policy is ``"raise"`` and the outbox (with
                the places other threads reserved) is full.
        """
        claim = self._claim
        if self.policy == "raise":
            with self._lock:
                if claim.reserved:  # the last admitted event never arrived: free its place
                    self._reserved -= 1
                    claim.reserved = False
                if len(self.items) + self._reserved >= self.capacity:
                    claim.pending = None
                    raise OutboxFullError(self.capacity, self.name)
                self._reserved += 1
                claim.reserved = True
        claim.pending = (ev, parts)

    def push(self, ev: Event[Any]) -> None:
        """Sink protocol: queue ``ev`` if it goes out (called while the bus records it)."""
        claim = self._claim
        pending = claim.pending
        parts: EncodedParts | None = None
        if pending is not None and (pending[0] is ev or _same_event(pending[0], ev)):
            parts = pending[1]
        elif ev.origin is not None or not self.wants(ev):
            return
        claim.pending = None
        with self._lock:
            reserved = claim.reserved
            if reserved:
                claim.reserved = False
                self._reserved -= 1
            if self.closed:
                return
            self.seq = seq = self.seq + 1
            items = self.items
            # A reserved place is always free; an unreserved event under
            # "raise" (admitted before the check was installed) is queued too:
            # its publish already returned, so dropping it would break the policy.
            if len(items) >= self.capacity and not reserved and self.policy != "raise":
                self.dropped += 1
                if self.policy == "drop_newest":
                    return
                items.popleft()
            items.append((seq, ev, parts))
        if self.idle:
            self.wake.set()

    def take(self, n: int) -> list[OutboxItem]:
        """Pop up to ``n`` items, oldest first (the sender)."""
        with self._lock:
            items = self.items
            count = min(n, len(items))
            return [items.popleft() for _ in range(count)]

    def clear(self) -> int:
        """Drop everything queued; return how many."""
        with self._lock:
            left = len(self.items)
            self.items.clear()
            return left

    def wait_for_room(self) -> None:
        return None

    def close(self) -> None:
        """Called when the bus closes: take no more events, let the sender finish."""
        self.closed = True
        self.wake.set()

    def stats(self) -> SinkStats:
        return self.stats_of()

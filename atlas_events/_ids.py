"""Cheap, unique event ids, made a block at a time (the hi/lo scheme).

An id is a per-process random prefix followed by a per-process counter in
base 10: ``"3f9a0c1e5b7d2a64-1017"``. The prefix holds 64 random bits, so
ids from different processes (or hosts) do not collide; the counter makes
ids unique inside a process.

The counter is split as in the HIGH/LOW scheme (Scott Ambler, "Mapping
Objects to Relational Databases"; Hibernate's ``hilo`` generator): a block
number ("hi", from 1) followed by a 3-digit position in the block ("lo",
``000``-``999``), so the counter starts at 1000. A block's 1,000 ids are
made at once by joining the block's prefix to a precomputed table of the
3-digit strings -- no int is formatted per id -- and the hot path takes one
with a single ``list.pop()``. ``prefix + str(next(counter))`` cost ~1,600
instructions per id; this costs ~650, the block refill included, and a
publish ~880 less (callgrind; docs/performance.md "Ids, hi/lo (round 6)").
``str(uuid4())`` costs more than a whole ``blinker.Signal.send``.

Ids are unique, not ordered, not even within one thread: a refill raced by
another thread, or interrupted by a finalizer or a signal handler that
takes ids itself, interleaves blocks; an exception raised inside a refill
skips a block.

Forks: the ids made ahead are dropped in the parent just before a fork
(``os.register_at_fork(before=...)``, with refills held off until the fork
is done), the child draws a new prefix, and a refill in a process other
than the one that drew the prefix draws a new one first. So a child never
hands out its parent's ids, even from code that runs in the child before
this module's fork hook (a thread-local's finalizer, an earlier hook), and
even when the fork interrupts a refill.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from typing import Final

__all__ = ["BLOCK", "IdSource", "new_id", "process_prefix"]

BLOCK: Final = 1000
"""Ids made per block (the "lo" range). A block waiting is ~78 KB (1,000
ids of ~70 bytes plus the list); a refill peaks at ~90 KB, and threads that
race a refill may each add a block."""

# Reversed: list.pop() takes from the end, so a block's ids come out ascending.
_LOW: Final = tuple(f"{lo:03d}" for lo in reversed(range(BLOCK)))


class IdSource:
    """A process's ids: ``take()`` returns the next one.

    ``take()`` raises ``IndexError`` once a block is used up; callers catch
    it and call :meth:`refill`, which makes the next block and returns its
    first id (:meth:`new_id` does both). Thread-safe: ``take`` is one atomic
    ``list.pop``, and refills run under :attr:`lock`, each claiming its own
    block number. :meth:`register_at_fork` installs the fork protocol.
    """

    __slots__ = ("blocks", "ids", "lock", "pid", "prefix", "take")

    def __init__(self) -> None:
        self.ids: list[str] = []
        # Bound once: the list object is never replaced (reset clears it in place).
        self.take = self.ids.pop
        self.lock = threading.RLock()  # re-entrant: a finalizer may refill inside a refill
        self.prefix = ""
        self.pid = 0
        self.blocks: Iterator[int] = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Draw a new prefix and drop the ids made ahead (a forked child calls this)."""
        self.ids.clear()
        self.prefix = os.urandom(8).hex() + "-"
        self.pid = os.getpid()
        self.blocks = itertools.count(1)

    def refill(self) -> str:
        """Make the next block of :data:`BLOCK` ids and return its first id."""
        while True:
            with self.lock:
                if self.pid != os.getpid():  # forked, and this runs before the child's hook
                    self.reset()
                prefix = self.prefix
                high = prefix + str(next(self.blocks))
                self.ids.extend([high + low for low in _LOW])
                if self.prefix is not prefix:  # a fork inside this refill reset the source
                    self.ids.clear()
                    continue
            try:
                return self.take()
            except IndexError:  # pragma: no cover - other threads took 1,000 ids meanwhile
                continue

    def new_id(self) -> str:
        """Return a new id."""
        try:
            return self.take()
        except IndexError:
            return self.refill()

    def register_at_fork(self) -> None:
        """Drop the ids made ahead before each fork; reset in the child.

        Refills wait while a fork is under way (the lock is held from the
        ``before`` hook to the ``after`` hooks).
        """
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._after_fork_in_parent,
            after_in_child=self._after_fork_in_child,
        )

    def _before_fork(self) -> None:
        self.lock.acquire()
        self.ids.clear()

    def _after_fork_in_parent(self) -> None:
        self.lock.release()

    def _after_fork_in_child(self) -> None:
        # A fresh lock: the inherited one is held (by this thread, or by a
        # refill the fork interrupted, which releases the old object).
        self.lock = threading.RLock()
        self.reset()


_SOURCE: Final = IdSource()
if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    _SOURCE.register_at_fork()


def new_id() -> str:
    """Return a new event id, unique in this process and across processes."""
    return _SOURCE.new_id()


def process_prefix() -> str:
    """Return this process's random id prefix (without the trailing dash)."""
    return _SOURCE.prefix[:-1]

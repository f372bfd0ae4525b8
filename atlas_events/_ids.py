"""Cheap, unique event ids, made a block at a time (the hi/lo scheme).

An id is a per-process random prefix followed by a per-process counter in
base 10: ``"3f9a0c1e5b7d2a64-1017"``. The prefix holds 64 random bits, so
ids from different processes (or hosts) do not collide; the counter makes
ids unique inside a process. A forked child draws a new prefix and drops the
ids its parent had made ahead, so parent and child never hand out the same id.

The counter is split as in the HIGH/LOW scheme (Scott Ambler, "Mapping
Objects to Relational Databases"; Hibernate's ``hilo`` generator): a block
number ("hi", from 1) followed by a 3-digit position in the block ("lo",
``000``-``999``), so the counter starts at 1000 and counts up by one. A
block's 1,000 ids are made at once by joining the block's prefix to a
precomputed table of the 3-digit strings -- no int is formatted per id --
and the hot path takes one with a single ``list.pop()``.
``prefix + str(next(counter))`` cost ~1,600 instructions per id; this
costs ~650, the block refill included, and a publish ~880 less (callgrind;
docs/performance.md "Ids, hi/lo (round 6)"). ``str(uuid4())`` costs more
than a whole ``blinker.Signal.send``.

Ids are unique, not ordered: two threads that both find the block used up
each make a block, and take ids from both.
"""

from __future__ import annotations

import itertools
import os
from typing import Final

__all__ = ["BLOCK", "IdSource", "new_id", "process_prefix"]

BLOCK: Final = 1000
"""Ids made per block (the "lo" range): 1,000 ids of ~22 characters, ~70 KB."""

# Reversed: list.pop() takes from the end, so a block's ids come out ascending.
_LOW: Final = tuple(f"{lo:03d}" for lo in reversed(range(BLOCK)))


class IdSource:
    """The process's ids: ``take()`` returns the next one.

    ``take()`` raises ``IndexError`` once a block is used up; callers catch
    it and call :meth:`refill`, which makes the next block and returns its
    first id. Thread-safe: ``take`` is one
    atomic ``list.pop``, and each refill claims its own block number.
    """

    __slots__ = ("blocks", "ids", "prefix", "take")

    def __init__(self) -> None:
        self.ids: list[str] = []
        # Bound once: the list object is never replaced (reset clears it in place).
        self.take = self.ids.pop
        self.prefix = ""
        self.blocks = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Draw a new prefix and drop the ids made ahead (a forked child calls this)."""
        self.ids.clear()
        self.prefix = os.urandom(8).hex() + "-"
        self.blocks = itertools.count(1)

    def refill(self) -> str:
        """Make the next block of :data:`BLOCK` ids and return its first id."""
        while True:
            high = self.prefix + str(next(self.blocks))
            self.ids.extend([high + low for low in _LOW])
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


_SOURCE: Final = IdSource()
if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_SOURCE.reset)


def new_id() -> str:
    """Return a new event id, unique in this process and across processes."""
    return _SOURCE.new_id()


def process_prefix() -> str:
    """Return this process's random id prefix (without the trailing dash)."""
    return _SOURCE.prefix[:-1]

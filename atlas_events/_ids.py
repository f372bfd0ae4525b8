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

Forks: while a fork is under way (from the ``before`` fork hook to the
``after`` ones) every taker -- :attr:`IdSource.take` and the names
:meth:`IdSource.bind` keeps in modules' globals, such as ``publish``'s --
refuses, so every id goes through :meth:`IdSource.refill`, which first
compares the process id with the one that drew the prefix and draws a new
prefix in a forked child. The child inherits the refusing takers, so code
that runs in it before this module's hook (a worker thread's thread-local
finalizer, which CPython runs before any fork hook; a hook registered
earlier; a signal handler) cannot take an id its parent made ahead. The
hooks take no lock, so a fork never waits for this module. Left open: a
``before`` hook that never ran (an exception from a signal handler landing
right at its start) leaves that fork unprotected, and an ``after_in_parent``
hook that never ran leaves the parent taking every id through ``refill``
(slower, still unique).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = ["BLOCK", "TAKER", "IdSource", "new_id", "process_prefix"]

BLOCK: Final = 1000
"""Ids made per block (the "lo" range). A block waiting is ~78 KB (1,000
ids of ~70 bytes plus the list); a refill peaks at ~90 KB, and threads that
race a refill may each add a block."""

TAKER: Final = "_take_id"
"""The name :meth:`IdSource.bind` keeps current in a module's globals."""

# Reversed: list.pop() takes from the end, so a block's ids come out ascending.
_LOW: Final = tuple(f"{lo:03d}" for lo in reversed(range(BLOCK)))


def _refuse() -> str:
    """The taker while a fork is under way: every id goes through ``refill()``."""
    raise IndexError("a fork is under way")


class IdSource:
    """A process's ids: ``take()`` returns the next one.

    ``take()`` raises ``IndexError`` once a block is used up (or while a
    fork is under way); callers catch it and call :meth:`refill`, which
    makes the next block when needed and returns an id (:meth:`new_id` does
    both). Thread-safe without a lock: ``take`` is one atomic ``list.pop``,
    and each refill claims its own block number. :meth:`register_at_fork`
    installs the fork hooks.
    """

    __slots__ = ("blocks", "ids", "namespaces", "pid", "prefix", "take")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.take: Callable[[], str] = self.ids.pop
        self.namespaces: list[dict[str, Any]] = []
        self.prefix = ""
        self.pid = 0
        self.blocks: Iterator[int] = itertools.count(1)
        self.reset()

    def bind(self, namespace: dict[str, Any]) -> None:
        """Keep ``namespace[TAKER]`` (a module's ``globals()``) the current taker.

        A hot path then calls a module global (a bound ``list.pop``) instead
        of loading an attribute per call.
        """
        namespace[TAKER] = self.take
        self.namespaces.append(namespace)

    def _set_taker(self, taker: Callable[[], str]) -> None:
        self.take = taker
        for namespace in self.namespaces:
            namespace[TAKER] = taker

    def reset(self) -> None:
        """Draw a new prefix, drop the ids made ahead and take again (a forked child's hook)."""
        self.ids.clear()
        self.prefix = os.urandom(8).hex() + "-"
        self.pid = os.getpid()
        self.blocks = itertools.count(1)
        self._allow_takes()

    def refill(self) -> str:
        """Return an id, making the next block of :data:`BLOCK` ids when none is waiting."""
        while True:
            if self.pid != os.getpid():  # a forked child, before (or without) its hook
                self.reset()
            try:
                return self.ids.pop()  # ids wait here while a fork is under way
            except IndexError:
                pass
            prefix = self.prefix
            high = prefix + str(next(self.blocks))
            self.ids.extend([high + low for low in _LOW])
            if self.prefix is not prefix:  # a fork inside this refill reset the source
                self.ids.clear()

    def new_id(self) -> str:
        """Return a new id."""
        try:
            return self.take()
        except IndexError:
            return self.refill()

    def register_at_fork(self) -> None:
        """Refuse takes from just before each fork until after it; reset in the child."""
        os.register_at_fork(
            before=self._refuse_takes,
            after_in_parent=self._allow_takes,
            after_in_child=self.reset,
        )

    def _refuse_takes(self) -> None:
        self._set_taker(_refuse)

    def _allow_takes(self) -> None:
        # The list object is never replaced (cleared in place), so the bound pop stays valid.
        self._set_taker(self.ids.pop)


_SOURCE: Final = IdSource()
if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    _SOURCE.register_at_fork()


def new_id() -> str:
    """Return a new event id, unique in this process and across processes."""
    return _SOURCE.new_id()


def process_prefix() -> str:
    """Return this process's random id prefix (without the trailing dash)."""
    return _SOURCE.prefix[:-1]

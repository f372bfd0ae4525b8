"""Deferred release: what a lock holder evicts is dropped only after the lock is left.

Dropping the last reference to a user object runs its finalizer
(``__del__``, a ``weakref`` callback) right there. Inside a bus lock that
finalizer may publish -- and deadlock on a non-reentrant stream lock, or
record its event in the middle of another one's delivery (a stream then
sees ``seq`` 3 before 2). So code holding a bus lock never drops an
evicted event itself: it hands it to :func:`keep`, and whoever leaves the
lock calls :func:`release_kept`, which drops everything kept, outside
every lock, in eviction order.

The queue is shared by the whole process on purpose: any thread that holds
no bus lock may drop what any other thread evicted (a finalizer that
publishes then simply waits for the lock like any publisher), and the
check on the publish path is one truth test of a module global.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

__all__ = ["KEPT", "keep", "release_kept"]

KEPT: Final[deque[Any]] = deque()
"""Objects evicted under a lock, waiting to be dropped (test it before calling)."""


def keep(obj: object) -> None:
    """Hold ``obj`` (evicted while a lock is held) until :func:`release_kept` runs.

    Thread-safe and lock-free (``deque.append`` is atomic).
    """
    KEPT.append(obj)


def release_kept() -> None:
    """Drop every kept object, oldest first; call only while holding no bus lock.

    A finalizer that runs here may publish (and so keep and release more):
    the loop drains those too.
    """
    popleft = KEPT.popleft
    while KEPT:
        try:
            obj = popleft()
        except IndexError:  # another thread released the last one meanwhile
            return
        del obj  # the finalizer, if this was the last reference, runs here

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

:func:`drop_gradually` drops a large container's contents (a cleared
history) a chunk at a time: freeing a million events in one ``del`` is one
C call that holds the GIL throughout (~0.15 s), stalling every other thread.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

__all__ = ["KEPT", "drop_gradually", "keep", "release_kept"]

KEPT: Final[deque[Any]] = deque()
"""Objects evicted under a lock, waiting to be dropped (test it before calling)."""

CHUNK: Final = 256
"""Objects :func:`drop_gradually` frees in one go (~40 us for events: the GIL is held that long)."""


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


def drop_gradually(items: deque[Any]) -> None:
    """Empty ``items``, dropping its objects oldest first, :data:`CHUNK` at a time.

    Between two chunks the interpreter may switch threads, so a publisher
    waits at most one chunk's deallocation (plus the switch interval)
    instead of the whole container's. Call only while holding no bus lock,
    on a container no other thread uses: finalizers run here (and may
    publish).
    """
    popleft = items.popleft
    while items:
        chunk = [popleft() for _ in range(min(CHUNK, len(items)))]
        chunk.reverse()  # a list is freed from its end: oldest last, so dropped first
        del chunk  # this chunk's finalizers, if any, run here

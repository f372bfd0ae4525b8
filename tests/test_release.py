"""Tests for _release: objects evicted under a lock are dropped after it, in order."""

from __future__ import annotations

import threading
from collections import deque

from atlas_events._release import CHUNK, KEPT, drop_gradually, keep, release_kept


class Noisy:
    """Records its own finalization, and may keep another object on the way out."""

    def __init__(self, log: list[str], name: str, then: object = None) -> None:
        self.log = log
        self.name = name
        self.then = then

    def __del__(self) -> None:
        self.log.append(self.name)
        if self.then is not None:
            keep(self.then)  # a finalizer that evicts more: drained by the same release


def test_kept_objects_live_until_released_then_die_in_order() -> None:
    """keep() holds the last reference; release_kept() drops them oldest first."""
    log: list[str] = []
    keep(Noisy(log, "a"))
    keep(Noisy(log, "b", then=Noisy(log, "c")))
    assert log == []
    release_kept()
    assert log == ["a", "b", "c"]
    assert not KEPT


def test_release_from_another_thread_is_safe() -> None:
    """Any thread holding no lock may release what another thread kept."""
    log: list[str] = []
    lock = threading.Lock()
    with lock:  # the evicting thread holds "a bus lock"
        keep(Noisy(log, "x"))
        worker = threading.Thread(target=release_kept)
        worker.start()
        worker.join(10)
    assert log == ["x"]


def test_drop_gradually_drops_oldest_first_a_chunk_at_a_time() -> None:
    """drop_gradually() empties the deque oldest first, never more than CHUNK at once."""
    n = 3 * CHUNK + 5
    log: list[str] = []
    left: list[int] = []  # the deque's length when each object was dropped

    class Counted(Noisy):
        def __del__(self) -> None:
            super().__del__()
            left.append(len(items))

    items: deque[object] = deque(Counted(log, str(i)) for i in range(n))
    drop_gradually(items)
    assert log == [str(i) for i in range(n)]
    assert not items
    for i, remaining in enumerate(left):
        chunk_end = min(n, (i // CHUNK + 1) * CHUNK)
        assert remaining == n - chunk_end, i  # only the chunk being dropped was taken out


def test_drop_gradually_lets_a_finalizer_drop_more() -> None:
    """A finalizer run by drop_gradually() may keep objects; release_kept() drops them after."""
    log: list[str] = []
    items: deque[object] = deque([Noisy(log, "a", then=Noisy(log, "b")), Noisy(log, "c")])
    drop_gradually(items)
    release_kept()
    assert log == ["a", "c", "b"]

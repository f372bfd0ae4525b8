"""Tests for _release: objects evicted under a lock are dropped after it, in order."""

from __future__ import annotations

import threading

from atlas_events._release import KEPT, keep, release_kept


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

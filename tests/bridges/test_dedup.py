"""The de-dup window: duplicates by (origin, incarnation, seq), gaps, bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_events.bridges._dedup import DedupWindow


def test_in_order_sequence_has_no_duplicates() -> None:
    """A plain increasing sequence is all new and has no gaps."""
    window = DedupWindow(window=8)
    assert not any(window.check("a", "i", n) for n in range(1, 100))
    assert (window.duplicates, window.gaps) == (0, 0)


def test_repeats_are_duplicates() -> None:
    """A retried batch (seq going back) is recognised entry by entry."""
    window = DedupWindow(window=64)
    for n in range(1, 11):
        window.check("a", "i", n)
    repeated = [window.check("a", "i", n) for n in range(6, 14)]
    assert repeated == [True] * 5 + [False] * 3
    assert window.duplicates == 5


def test_origins_and_incarnations_are_separate() -> None:
    """The same seq from another node, or a restarted one, is new."""
    window = DedupWindow()
    assert not window.check("a", "1", 1)
    assert not window.check("b", "1", 1)
    assert not window.check("a", "2", 1)
    assert window.check("a", "1", 1)


def test_late_arrivals_inside_the_window_fill_gaps() -> None:
    """Out-of-order seqs inside the window are new once, then duplicates."""
    window = DedupWindow(window=16)
    window.check("a", "i", 1)
    window.check("a", "i", 5)
    assert window.gaps == 3
    assert not window.check("a", "i", 3)
    assert window.gaps == 2
    assert window.check("a", "i", 3)


def test_older_than_the_window_counts_as_duplicate() -> None:
    """Past the window nothing can be told apart: refuse rather than deliver twice."""
    window = DedupWindow(window=4)
    window.check("a", "i", 1)
    window.check("a", "i", 10)
    assert window.check("a", "i", 2)


def test_origins_are_bounded_lru() -> None:
    """The least recently active origin is forgotten first."""
    window = DedupWindow(max_origins=2)
    window.check("a", "i", 1)
    window.check("b", "i", 1)
    window.check("a", "i", 2)  # a is now the most recent
    window.check("c", "i", 1)  # evicts b
    assert len(window) == 2
    assert window.check("a", "i", 2)
    assert not window.check("b", "i", 1)  # forgotten, so new again


def test_bounds_are_validated() -> None:
    """Window and origin counts must be positive ints."""
    with pytest.raises(ValueError, match="window"):
        DedupWindow(window=0)
    with pytest.raises(ValueError, match="max_origins"):
        DedupWindow(max_origins=True)


@given(
    count=st.integers(1, 300),
    dup_rate=st.floats(0, 0.5),
    shuffle_span=st.integers(1, 32),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_seq_is_delivered_exactly_once(
    count: int, dup_rate: float, shuffle_span: int, seed: int
) -> None:
    """Redeliveries and reordering within the window never deliver twice or lose one."""
    rng = random.Random(seed)
    stream: list[int] = []
    for n in range(1, count + 1):
        stream.append(n)
        if rng.random() < dup_rate:  # a redelivery, shortly after
            stream.insert(len(stream) - rng.randint(0, min(len(stream) - 1, 5)), n)
    for i in range(0, len(stream), shuffle_span):  # local reordering
        chunk = stream[i : i + shuffle_span]
        rng.shuffle(chunk)
        stream[i : i + shuffle_span] = chunk
    window = DedupWindow(window=128)
    delivered = [n for n in stream if not window.check("o", "i", n)]
    assert sorted(delivered) == list(range(1, count + 1))
    assert window.duplicates == len(stream) - count
    assert window.gaps == 0

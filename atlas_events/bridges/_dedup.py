"""De-duplication of redelivered events by ``(origin, incarnation, seq)``."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DedupWindow"]


class _Origin:
    """Per-origin state: the highest seq seen and a bitmap of the ones below it."""

    __slots__ = ("first", "high", "seen")

    def __init__(self, high: int) -> None:
        self.first = high  # below this, a missing seq was never counted as a gap
        self.high = high
        self.seen = 1  # bit k set: seq ``high - k`` was seen


class DedupWindow:
    """Remembers which sequence numbers each origin has delivered.

    An anti-replay window (as in IPsec): per origin, the highest sequence
    number seen and a bitmap of the ``window`` numbers below it. A number
    seen before is a duplicate; so is one older than the window (it can no
    longer be told apart). Up to ``max_origins`` origins are tracked; the
    least recently active is forgotten first.

    Args:
        window: Sequence numbers remembered below each origin's highest.
        max_origins: Origins (node incarnations) remembered.

    Not thread-safe: one bridge reader thread owns it.
    """

    __slots__ = ("_mask", "_origins", "duplicates", "gaps", "max_origins", "window")

    def __init__(self, window: int = 4096, max_origins: int = 10_000) -> None:
        for name, value in (("window", window), ("max_origins", max_origins)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.window = window
        self.max_origins = max_origins
        self._mask = (1 << window) - 1
        self._origins: OrderedDict[tuple[str, str], _Origin] = OrderedDict()
        self.duplicates = 0
        self.gaps = 0

    def __len__(self) -> int:
        return len(self._origins)

    def check(self, origin: str, incarnation: str, seq: int) -> bool:
        """Record ``seq`` for the origin; return ``True`` if it is a duplicate.

        Also keeps :attr:`gaps`: numbers an origin skipped (events lost
        before they reached the stream, or trimmed before they were read),
        less the ones that arrived late.
        """
        key = (origin, incarnation)
        state = self._origins.get(key)
        if state is None:
            self._origins[key] = _Origin(seq)
            if len(self._origins) > self.max_origins:
                self._origins.popitem(last=False)
            return False
        self._origins.move_to_end(key)
        high = state.high
        if seq > high:
            shift = seq - high
            state.seen = ((state.seen << shift) | 1) & self._mask if shift <= self.window else 1
            state.high = seq
            self.gaps += shift - 1
            return False
        back = high - seq
        if back >= self.window or (state.seen >> back) & 1:
            self.duplicates += 1
            return True
        state.seen |= 1 << back
        if seq > state.first:
            self.gaps -= 1
        return False

    def forget(self) -> None:
        """Forget every origin (the counters are kept)."""
        self._origins.clear()

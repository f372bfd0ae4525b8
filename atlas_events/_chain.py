"""The middleware chain of one bus: its own middleware and the policies it inherits."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._event import Event
from ._recorder import Registration
from .exceptions import InvalidMiddlewareResultError, MiddlewareError

if TYPE_CHECKING:
    from .middleware import Middleware

__all__ = ["MiddlewareChain", "checked_result", "inherits_by_default", "run_middleware"]


def inherits_by_default(fn: object) -> bool:
    """A middleware's own default for ``inherit``: its ``inherit`` attribute, else ``False``.

    Policies that must cover a whole scope tree (e.g. :class:`Redact`) set
    ``inherit = True`` on their class.
    """
    value = getattr(fn, "inherit", False)
    return value if isinstance(value, bool) else False


class MiddlewareChain:
    """The middleware a bus runs, rebuilt (as tuples) whenever it changes.

    * :attr:`here` runs on events published on this bus: the inherited
      policies of its ancestors (root first), then this bus's own middleware
      in the order added.
    * :attr:`forwarded` runs on events forwarded from a child scope: only
      this bus's own middleware added with ``inherit=False`` (the inherited
      ones already ran where the event was published).

    :attr:`here_counters` / :attr:`forwarded_counters` name, index for index,
    the counter of the bus whose middleware dropped an event.

    Args:
        count_drop: Counts an event dropped by this bus's own middleware.
    """

    __slots__ = (
        "_records",
        "count_drop",
        "forwarded",
        "forwarded_counters",
        "here",
        "here_counters",
        "inherited",
    )

    def __init__(self, count_drop: Callable[[], None]) -> None:
        self.count_drop = count_drop
        self._records: list[Registration] = []
        self.inherited: tuple[tuple[Middleware, Callable[[], None]], ...] = ()
        self.here: tuple[Middleware, ...] = ()
        self.here_counters: tuple[Callable[[], None], ...] = ()
        self.forwarded: tuple[Middleware, ...] = ()
        self.forwarded_counters: tuple[Callable[[], None], ...] = ()

    def __len__(self) -> int:
        """This bus's own middleware count (inherited policies not included)."""
        return len(self._records)

    def add(self, rec: Registration) -> None:
        """Append ``rec`` (its item is ``(middleware, inherit)``); caller holds the tree lock."""
        self._records.append(rec)
        self._rebuild()

    def remove(self, rec: Registration) -> bool:
        """Unlink ``rec``; ``True`` if the inheritable set changed (descendants must refresh)."""
        if rec not in self._records:
            return False
        self._records.remove(rec)
        self._rebuild()
        return bool(rec.item[1])

    def clear(self) -> None:
        for rec in self._records:
            rec.active = False
        self._records = []
        self.inherited = ()
        self._rebuild()

    def inheritable(self) -> tuple[tuple[Middleware, Callable[[], None]], ...]:
        """What this bus's children inherit: its own inherited policies, then its own."""
        own = tuple((r.item[0], self.count_drop) for r in self._records if r.item[1])
        return self.inherited + own

    def set_inherited(self, items: tuple[tuple[Middleware, Callable[[], None]], ...]) -> None:
        self.inherited = items
        self._rebuild()

    def _rebuild(self) -> None:
        own = [(r.item[0], self.count_drop) for r in self._records]
        here = [*self.inherited, *own]
        fwd = [(r.item[0], self.count_drop) for r in self._records if not r.item[1]]
        # Assigned in one order so a concurrent publish sees a matching pair.
        self.here_counters = tuple(c for _, c in here)
        self.here = tuple(m for m, _ in here)
        self.forwarded_counters = tuple(c for _, c in fwd)
        self.forwarded = tuple(m for m, _ in fwd)


def owner_counter(
    mws: tuple[Middleware, ...], counters: tuple[Callable[[], None], ...], mw: Any
) -> Callable[[], None] | None:
    """The drop counter of ``mw`` in a chain snapshot (``None`` if it is gone)."""
    for m, c in zip(mws, counters, strict=False):
        if m is mw:
            return c
    return None


def run_middleware(
    mws: tuple[Callable[[Event[Any]], Event[Any] | None], ...],
    counters: tuple[Callable[[], None], ...],
    ev: Event[Any],
    fallback: Callable[[], None],
) -> Event[Any] | None:
    """Pass ``ev`` through ``mws``; ``None`` if one dropped it (counted for its bus).

    Raises:
        MiddlewareError: A middleware raised.
        InvalidMiddlewareResultError: A middleware returned a non-event.
    """
    for mw in mws:
        try:
            res = mw(ev)
        except Exception as exc:
            raise MiddlewareError(mw, ev.id, exc) from exc
        if res is ev:
            continue
        res = checked_result(mws, counters, mw, ev, res, fallback)
        if res is None:
            return None
        ev = res
    return ev


def checked_result(
    mws: tuple[Callable[[Event[Any]], Event[Any] | None], ...],
    counters: tuple[Callable[[], None], ...],
    mw: Callable[[Event[Any]], Event[Any] | None],
    ev: Event[Any],
    res: object,
    fallback: Callable[[], None],
) -> Event[Any] | None:
    """``mw`` of ``mws`` returned ``res``, not ``ev``: ``None`` if dropped (counted), else ``res``.

    Raises:
        InvalidMiddlewareResultError: ``res`` is neither ``None`` nor an event.
    """
    if res is None:
        (owner_counter(mws, counters, mw) or fallback)()
        return None
    if not isinstance(res, Event):
        raise InvalidMiddlewareResultError(mw, ev.id, res)
    return res

"""Trace of one run: its events as a causation tree (``parent_id``) on a time axis."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, Final

from .._event import Event, EventType

__all__ = ["GAP_FRACTION", "GAP_RATIO", "MIN_GAP_SECONDS", "build_trace"]

GAP_FRACTION: Final = 0.2
"""An idle span counts as a gap when it is at least this share of the run's busy time..."""

MIN_GAP_SECONDS: Final = 0.01
"""... and at least this long (seconds)..."""

GAP_RATIO: Final = 10.0
"""... and at least this many times the run's median spacing between events."""


def _stamp(ev: Event[Any]) -> float | None:
    t = ev.timestamp
    return float(t) if type(t) in (int, float) and math.isfinite(t) else None


def _error_of(ev: Event[Any]) -> dict[str, Any]:
    failure = ev.data
    exc = getattr(failure, "exception", None)
    try:
        text = f"{type(exc).__name__}: {exc}" if exc is not None else str(failure)
    except Exception:  # a broken __str__ must not break the trace
        text = type(exc).__name__
    return {
        "seq": ev.seq,
        "id": ev.id,
        "handler": str(getattr(failure, "handler", "?")),
        "error": text[:500],
    }


def _gaps(times: list[float], duration: float) -> list[dict[str, float]]:
    """Idle spans long next to the run's busy time (``duration`` minus the gaps).

    A gap is at least :data:`MIN_GAP_SECONDS`, :data:`GAP_RATIO` times the
    median spacing (a steady trickle has none) and :data:`GAP_FRACTION` of
    the busy time. Measured against the busy time, not the whole run, so one
    long pause does not hide shorter ones that still dwarf the work around
    them: the smallest candidate is dropped until each one passes.
    """
    pairs = list(itertools.pairwise(times))
    if not pairs:
        return []
    least = max(MIN_GAP_SECONDS, GAP_RATIO * statistics.median(b - a for a, b in pairs))
    spans = [(after - before, before, after) for before, after in pairs if after - before >= least]
    spans.sort()
    idle = sum(s[0] for s in spans)
    while spans and spans[0][0] < GAP_FRACTION * (duration - idle):
        idle -= spans.pop(0)[0]
    return [
        {"start": before, "end": after, "seconds": seconds}
        for seconds, before, after in sorted(spans, key=lambda s: s[1])
    ]


def _fold_errors(
    events: Sequence[Event[Any]],
) -> tuple[dict[str, list[dict[str, Any]]], list[Event[Any]]]:
    """``HANDLER_ERROR`` reports by the id of the event that caused them, and the other events."""
    ids = {ev.id for ev in events}
    errors: dict[str, list[dict[str, Any]]] = {}
    kept: list[Event[Any]] = []
    for ev in events:
        if ev.type is EventType.HANDLER_ERROR and ev.parent_id in ids:
            errors.setdefault(str(ev.parent_id), []).append(_error_of(ev))
        else:
            kept.append(ev)
    return errors, kept


def _node(
    ev: Event[Any],
    encode: Callable[[Event[Any]], dict[str, Any]],
    start: float,
    errors: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    stamp = _stamp(ev)
    return {
        "event": encode(ev),
        "offset": None if stamp is None else stamp - start,
        "lane": "/".join(ev.scope) or "(root)",
        "depth": 0,
        "errors": errors.get(ev.id, []),
        "children": [],
    }


def _set_depths(roots: list[dict[str, Any]], reached: set[int]) -> None:
    """Number each node's depth below ``roots``; record the nodes reached (by ``id``)."""
    stack = [(r, 0) for r in roots]
    while stack:  # iterative: a deep causation chain must not hit the recursion limit
        node, depth = stack.pop()
        node["depth"] = depth
        reached.add(id(node))
        stack.extend((c, depth + 1) for c in node["children"])


def _cut_cycle(start: dict[str, Any], parents: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The node where the parent chain from ``start`` loops, detached from its parent."""
    seen: set[int] = set()
    node = start
    while id(node) not in seen:
        seen.add(id(node))
        node = parents[id(node)]
    parent = parents.pop(id(node))
    parent["children"] = [c for c in parent["children"] if c is not node]
    node["parent_cycle"] = True
    return node


def _link(
    kept: list[Event[Any]], nodes: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int, int]:
    """Attach each node to its parent's children.

    ``nodes[i]`` is the node of ``kept[i]``; a reused id names its first
    event. A ``parent_id`` cycle (A's parent B, B's parent A) is reached
    from no root: it is cut where the walk up from its first unreached
    event loops, and that event becomes a root marked ``"parent_cycle"``.

    Returns:
        The roots, the orphan count and the number of cycles cut.
    """
    first: dict[str, dict[str, Any]] = {}
    for ev, node in zip(kept, nodes, strict=True):
        first.setdefault(ev.id, node)
    roots: list[dict[str, Any]] = []
    parents: dict[int, dict[str, Any]] = {}
    orphans = 0
    for ev, node in zip(kept, nodes, strict=True):
        parent = first.get(ev.parent_id) if ev.parent_id is not None else None
        if parent is None or parent is node:
            if ev.parent_id is not None:
                node["parent_missing"] = True
                orphans += 1
            roots.append(node)
        else:
            parent["children"].append(node)
            parents[id(node)] = parent
    reached: set[int] = set()
    _set_depths(roots, reached)
    cycles = 0
    for node in nodes:
        if id(node) not in reached:
            cut = _cut_cycle(node, parents)
            cycles += 1
            roots.append(cut)
            _set_depths([cut], reached)
    return roots, orphans, cycles


def build_trace(
    events: Sequence[Event[Any]], encode: Callable[[Event[Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The trace of a run, as JSON-ready data.

    Args:
        events: The run's retained events, oldest first.
        encode: Turns an event into its JSON object (the dashboard's encoder).

    Returns:
        ``{"count", "start", "duration", "lanes", "roots", "gaps", "errors",
        "orphans", "cycles"}``. ``start`` is the first event's timestamp (epoch
        seconds) and every node's ``offset`` is seconds after it. A node is
        ``{"event", "offset", "lane", "depth", "errors", "children"}``:
        ``lane`` is the scope path (``"(root)"`` for the root bus),
        ``errors`` the ``HANDLER_ERROR`` reports about this event (handler,
        error text) -- those reports are folded into the event that caused
        them rather than shown as children. A node whose parent is not in
        the run (evicted, or from another run) is a root with
        ``"parent_missing": true``; ``orphans`` counts them. Events whose
        ``parent_id`` values form a cycle are cut into a tree at one event,
        a root marked ``"parent_cycle": true``; ``cycles`` counts the cuts.
        Every event appears exactly once, also when two share an id (a
        child's ``parent_id`` names the first). ``gaps`` lists idle spans
        (offsets, seconds) of at least 10 ms and at least 20% of the run's
        busy time (its duration minus the gaps).
    """
    errors, kept = _fold_errors(events)
    stamps = [s for s in map(_stamp, kept) if s is not None]
    start = min(stamps) if stamps else 0.0
    end = max(stamps) if stamps else 0.0
    nodes = [_node(ev, encode, start, errors) for ev in kept]
    roots, orphans, cycles = _link(kept, nodes)
    lanes = sorted({n["lane"] for n in nodes}, key=lambda s: (s != "(root)", s))
    return {
        "count": len(kept),
        "start": start,
        "duration": end - start,
        "lanes": lanes,
        "roots": roots,
        "gaps": [
            {"start": g["start"] - start, "end": g["end"] - start, "seconds": g["seconds"]}
            for g in _gaps(sorted(stamps), end - start)
        ],
        "errors": sum(len(v) for v in errors.values()),
        "orphans": orphans,
        "cycles": cycles,
    }

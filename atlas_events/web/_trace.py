"""Trace of one run: its events as a causation tree (``parent_id``) on a time axis."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from .._event import Event, EventType

__all__ = ["GAP_FRACTION", "MIN_GAP_SECONDS", "build_trace"]

GAP_FRACTION: Final = 0.2
"""An idle span counts as a gap when it is at least this share of the run's duration..."""

MIN_GAP_SECONDS: Final = 0.05
"""... and at least this long (seconds)."""


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
    threshold = max(MIN_GAP_SECONDS, duration * GAP_FRACTION)
    out = []
    for before, after in itertools.pairwise(times):
        if after - before >= threshold:
            out.append({"start": before, "end": after, "seconds": after - before})
    return out


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


def _link(
    kept: list[Event[Any]], nodes: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Attach each node to its parent's children; return the roots and the orphan count."""
    roots: list[dict[str, Any]] = []
    orphans = 0
    for ev in kept:
        node = nodes[ev.id]
        parent = nodes.get(ev.parent_id) if ev.parent_id is not None else None
        if parent is None or parent is node:
            if ev.parent_id is not None:
                node["parent_missing"] = True
                orphans += 1
            roots.append(node)
        else:
            parent["children"].append(node)
    stack = [(r, 0) for r in roots]
    while stack:  # iterative: a deep causation chain must not hit the recursion limit
        node, depth = stack.pop()
        node["depth"] = depth
        stack.extend((c, depth + 1) for c in node["children"])
    return roots, orphans


def build_trace(
    events: Sequence[Event[Any]], encode: Callable[[Event[Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The trace of a run, as JSON-ready data.

    Args:
        events: The run's retained events, oldest first.
        encode: Turns an event into its JSON object (the dashboard's encoder).

    Returns:
        ``{"count", "start", "duration", "lanes", "roots", "gaps", "errors",
        "orphans"}``. ``start`` is the first event's timestamp (epoch
        seconds) and every node's ``offset`` is seconds after it. A node is
        ``{"event", "offset", "lane", "depth", "errors", "children"}``:
        ``lane`` is the scope path (``"(root)"`` for the root bus),
        ``errors`` the ``HANDLER_ERROR`` reports about this event (handler,
        error text) -- those reports are folded into the event that caused
        them rather than shown as children. A node whose parent is not in
        the run (evicted, or from another run) is a root with
        ``"parent_missing": true``; ``orphans`` counts them. ``gaps`` lists
        idle spans (offsets, seconds) of at least 20% of the run's duration
        and at least 50 ms.
    """
    errors, kept = _fold_errors(events)
    stamps = [s for s in map(_stamp, kept) if s is not None]
    start = min(stamps) if stamps else 0.0
    end = max(stamps) if stamps else 0.0
    nodes = {ev.id: _node(ev, encode, start, errors) for ev in kept}
    roots, orphans = _link(kept, nodes)
    lanes = sorted({n["lane"] for n in nodes.values()}, key=lambda s: (s != "(root)", s))
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
    }

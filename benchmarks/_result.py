"""What a scenario returns: rows of median and minimum ns/event, ratios to raw blinker."""

from __future__ import annotations

from typing import Any, TypedDict

from ._timing import median
from .peers import Blinker, Handler

__all__ = ["PAYLOAD", "Row", "ScenarioResult", "make_result", "noop_handlers"]

PAYLOAD: dict[str, int] = {"step": 1}
"""The payload every scenario publishes."""


class Row(TypedDict):
    ns: float
    min_ns: float
    runs: list[float]
    ratio_to_blinker: float | None
    min_ratio_to_blinker: float | None


class ScenarioResult(TypedDict):
    name: str
    title: str
    unit: str
    rows: dict[str, Row]
    extra: dict[str, Any]


def noop_handlers(n: int) -> list[Handler]:
    """``n`` distinct no-op handlers (libraries dedupe identical ones)."""

    def make() -> Handler:
        def handler(data: object) -> None:
            return None

        return handler

    return [make() for _ in range(n)]


def make_result(
    name: str,
    title: str,
    runs: dict[str, list[float]],
    unit: str = "ns/event",
    base: str = Blinker.name,
) -> ScenarioResult:
    """Rows of median and minimum of ``runs``, with ratios to the ``base`` row."""
    rows: dict[str, Row] = {
        impl: {
            "ns": median(values),
            "min_ns": min(values),
            "runs": [round(v, 1) for v in values],
            "ratio_to_blinker": None,
            "min_ratio_to_blinker": None,
        }
        for impl, values in runs.items()
    }
    if base in rows:
        ref = rows[base]
        for row in rows.values():
            row["ratio_to_blinker"] = row["ns"] / ref["ns"]
            row["min_ratio_to_blinker"] = row["min_ns"] / ref["min_ns"]
    return {"name": name, "title": title, "unit": unit, "rows": rows, "extra": {}}

"""Which build is running: the pure-Python package or the opt-in mypyc-compiled one."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["COMPILED_MODULES", "compiled"]

# The modules ATLAS_EVENTS_COMPILE=1 compiles with mypyc (setup.py reads this
# line; keep it a literal tuple). Which modules compile without breaking a
# guarantee, and what compiling gains: docs/performance.md, "Compiled build".
COMPILED_MODULES: Final = (
    "atlas_events._build",
    "atlas_events._ids",
    "atlas_events._subscription",
)

compiled: Final[bool] = Path(__file__).suffix in (".so", ".pyd")
"""``True`` when this module is a compiled extension, i.e. the package was
built with ``ATLAS_EVENTS_COMPILE=1`` and every module of
:data:`COMPILED_MODULES` is compiled (``tests/test_build.py`` checks both)."""

"""The runnable examples in docs/examples run cleanly (they are part of the docs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "docs" / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    """Each example exits 0 and prints something."""
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_examples_exist() -> None:
    """The docs ship at least the quickstart and the async example."""
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.py", "async_consumer.py"} <= names

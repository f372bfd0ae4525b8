"""Packaging metadata: the license and a lean test extra."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_TOOLS = {
    "mypy",
    "ruff",
    "playwright",
    "radon",
    "import-linter",
    "pyee",
    "pypubsub",
    "pydispatcher",
}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def test_license_file_matches_the_spdx_metadata() -> None:
    """LICENSE at the root is the MIT text that pyproject's PEP 639 expression names."""
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    requires = PYPROJECT["build-system"]["requires"]
    assert any(r.startswith("setuptools>=") and int(r.split(">=")[1]) >= 77 for r in requires)


def test_installed_metadata_carries_the_license_expression() -> None:
    """The built distribution reports License-Expression: MIT (the installed copy)."""
    md = metadata.metadata("atlas-events")
    assert md["License-Expression"] == "MIT"


def test_test_extra_is_lean() -> None:
    """pip install atlas-events[test] brings pytest tooling, never the development tools."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    names = {_name(r) for r in extras["test"]}
    assert "pytest" in names
    assert not names & DEV_TOOLS
    assert not any("atlas-events" in r for r in extras["test"])


def test_dev_group_holds_the_development_tools() -> None:
    """The PEP 735 'dev' group includes every development tool the extras no longer carry."""
    groups = PYPROJECT["dependency-groups"]
    included = {g["include-group"] for g in groups["dev"] if isinstance(g, dict)}
    names = {_name(r) for g in included for r in groups[g] if isinstance(r, str)}
    assert {"mypy", "ruff", "playwright", "radon", "import-linter"} <= names

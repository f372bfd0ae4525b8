"""The build flag: ``atlas_events.compiled`` and the opt-in compiled build in setup.py."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

import atlas_events
from atlas_events._build import COMPILED_MODULES

ROOT = Path(__file__).resolve().parents[1]
EXTENSION_SUFFIXES = (".so", ".pyd")


@pytest.fixture(scope="module")
def setup_script() -> ModuleType:
    """setup.py loaded as a module (under another name, so it does not call setup())."""
    spec = importlib.util.spec_from_file_location("atlas_events_setup", ROOT / "setup.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compiled_is_a_bool_that_matches_the_compiled_modules() -> None:
    """``compiled`` is True exactly when every listed module is an extension module."""
    assert isinstance(atlas_events.compiled, bool)
    assert "compiled" in atlas_events.__all__
    for name in COMPILED_MODULES:
        module = importlib.import_module(name)
        is_extension = Path(module.__file__ or "").suffix in EXTENSION_SUFFIXES
        assert is_extension is atlas_events.compiled, name


@pytest.mark.skipif(
    "ATLAS_EVENTS_EXPECT_COMPILED" not in os.environ,
    reason="set ATLAS_EVENTS_EXPECT_COMPILED=1 (or 0) to assert which build is installed",
)
def test_the_expected_build_is_the_one_imported() -> None:
    """CI's compiled run really imports the compiled package (no silent pure fallback)."""
    expected = os.environ["ATLAS_EVENTS_EXPECT_COMPILED"] == "1"
    assert atlas_events.compiled is expected, atlas_events.__file__


def test_setup_reads_the_module_list_from_the_package(
    setup_script: ModuleType, tmp_path: Path
) -> None:
    """setup.py compiles exactly ``COMPILED_MODULES``, read from the source without importing."""
    source = ROOT / "atlas_events" / "_build.py"
    if source.is_file():  # absent where the suite runs against an installed build
        assert setup_script.compiled_modules(source) == list(COMPILED_MODULES)
    fake = tmp_path / "_build.py"
    fake.write_text('COMPILED_MODULES: Final = ("atlas_events._build", "atlas_events._x")\n')
    assert setup_script.compiled_modules(fake) == ["atlas_events._build", "atlas_events._x"]


def test_setup_refuses_a_module_list_without_the_flag_module(
    setup_script: ModuleType, tmp_path: Path
) -> None:
    """Without ``atlas_events._build`` compiled, ``compiled`` could not tell: refused."""
    fake = tmp_path / "_build.py"
    fake.write_text('COMPILED_MODULES: Final = ("atlas_events._ids",)\n')
    with pytest.raises(setup_script.CompileError, match=r"atlas_events\._build"):
        setup_script.compiled_modules(fake)
    fake.write_text("OTHER = 1\n")
    with pytest.raises(setup_script.CompileError, match="no COMPILED_MODULES"):
        setup_script.compiled_modules(fake)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", False), ("0", False), ("no", False), ("1", True), ("true", True), (" YES ", True)],
)
def test_the_flag_values(setup_script: ModuleType, value: str, expected: bool) -> None:
    """ATLAS_EVENTS_COMPILE accepts 1/true/yes and 0/false/no (or unset: pure Python)."""
    assert setup_script.compile_requested({"ATLAS_EVENTS_COMPILE": value}) is expected
    assert setup_script.compile_requested({}) is False


def test_a_misspelt_flag_is_an_error(setup_script: ModuleType) -> None:
    """A value that is neither on nor off fails the build instead of guessing."""
    with pytest.raises(setup_script.CompileError, match="ATLAS_EVENTS_COMPILE"):
        setup_script.compile_requested({"ATLAS_EVENTS_COMPILE": "maybe"})


def test_the_compiled_build_requires_mypy_and_the_runtime_dependencies(
    setup_script: ModuleType,
) -> None:
    """mypyc type-checks what it compiles: the typed runtime packages are build requirements."""
    needs = setup_script.build_requirements()
    assert needs[0].startswith("mypy")
    assert any(r.startswith("blinker") for r in needs)
    assert any(r.startswith("attrs") for r in needs)

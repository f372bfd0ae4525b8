"""Build hook for the opt-in compiled build: ``ATLAS_EVENTS_COMPILE=1 pip install .``.

Metadata lives in pyproject.toml and the file list in setup.cfg; this file
only adds mypyc extensions when the flag is set (black and mypy ship the same
way). Without the flag, and always for ``pip install -e .``, the package is
pure Python. The modules to compile are ``COMPILED_MODULES`` in
``atlas_events/_build.py``.
"""

from __future__ import annotations

import ast
import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
FLAG = "ATLAS_EVENTS_COMPILE"
MYPYC_REQUIREMENT = "mypy>=1.11"  # mypyc ships inside mypy


class CompileError(RuntimeError):
    """The compiled build was asked for and cannot be made."""


def compile_requested(environ: dict[str, str] | None = None) -> bool:
    """Whether ``ATLAS_EVENTS_COMPILE`` asks for the compiled build ("1", "true", "yes")."""
    value = (os.environ if environ is None else environ).get(FLAG, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise CompileError(f"{FLAG} must be 1/true/yes or 0/false/no, got {value!r}")


def compiled_modules(build_module: Path = HERE / "atlas_events" / "_build.py") -> list[str]:
    """``COMPILED_MODULES`` from ``atlas_events/_build.py``, read without importing it."""
    tree = ast.parse(build_module.read_text(encoding="utf-8"))
    for node in tree.body:
        if not isinstance(node, ast.AnnAssign) or node.value is None:
            continue
        if isinstance(node.target, ast.Name) and node.target.id == "COMPILED_MODULES":
            modules = ast.literal_eval(node.value)
            if "atlas_events._build" not in modules:
                raise CompileError("COMPILED_MODULES must include atlas_events._build")
            return list(modules)
    raise CompileError(f"no COMPILED_MODULES assignment in {build_module}")


def build_requirements(pyproject: Path = HERE / "pyproject.toml") -> list[str]:
    """What the compiled build needs: mypyc, and the runtime dependencies.

    mypyc type-checks the modules it compiles, so the packages they import
    (blinker, attrs: typed) must be importable in the build environment.
    """
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return [MYPYC_REQUIREMENT, *project["dependencies"]]


def _extensions() -> list[Any]:
    if not compile_requested():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        # The build front end's first pass, asking for the build requirements:
        # setup_requires names mypy, so it is installed before the real build.
        return []
    paths = [m.replace(".", "/") + ".py" for m in compiled_modules()]
    return list(mypycify(paths, opt_level="3", group_name="atlas_events"))


class _BuildPy(build_py):
    """Refuses to build a pure wheel when the compiled one was asked for."""

    def run(self) -> None:
        if compile_requested():
            try:
                import mypyc.build  # noqa: F401
            except ImportError as exc:
                needs = ", ".join(build_requirements())
                raise CompileError(f"{FLAG}=1 needs {needs} in the build environment") from exc
        super().run()


if __name__ == "__main__":
    setup(
        ext_modules=_extensions(),
        setup_requires=build_requirements() if compile_requested() else [],
        cmdclass={"build_py": _BuildPy},
    )

"""Start-up: ``import circuits`` and ``circuits --help`` load no heavy dependency; every public
name still resolves on first use. (``benchmarks/bench_startup.py`` measures the times.)"""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import circuits

HEAVY = {"sympy", "networkx", "graphviz", "mpmath", "matplotlib", "safetensors", "scipy", "torch"}
LAZY_PACKAGES = ("circuits", "circuits.analysis", "circuits.verify")


def imported(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime argv…``; its result and the top-level packages it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, timeout=120
    )
    modules = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result, modules


def test_import_loads_neither_numpy_nor_heavy_dependencies() -> None:
    result, modules = imported("-c", "import circuits")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "circuits" in modules
    assert modules.isdisjoint(HEAVY | {"numpy"}), modules & (HEAVY | {"numpy"})


@pytest.mark.parametrize("argv", [["--help"], ["certify", "--help"]], ids=" ".join)
def test_help_loads_no_heavy_dependency(argv: list[str]) -> None:
    result, modules = imported("-m", "circuits", *argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: circuits")
    assert modules.isdisjoint(HEAVY | {"numpy"}), modules & (HEAVY | {"numpy"})


def test_console_script_help_loads_no_heavy_dependency() -> None:
    script = shutil.which("circuits", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the circuits console script is not installed next to this interpreter")
    result, modules = imported(script, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: circuits")
    assert modules.isdisjoint(HEAVY), modules & HEAVY


@pytest.mark.parametrize("package", ["circuits.analysis", "circuits.verify", "circuits.zoo"])
def test_subpackages_load_no_heavy_dependency(package: str) -> None:
    result, modules = imported("-c", f"import {package}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert modules.isdisjoint(HEAVY), modules & HEAVY


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_public_name_resolves_and_is_listed(package: str) -> None:
    module = importlib.import_module(package)
    listed = dir(module)
    for name in module.__all__:
        assert getattr(module, name) is not None
        assert name in listed
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    assert set(module.__all__) <= set(namespace)


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_unknown_names_raise_attribute_error(package: str) -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = importlib.import_module(package).no_such_name


def test_submodules_are_attributes() -> None:
    for name in ("analysis", "construct", "verify", "zoo", "paths", "render", "cli"):
        assert isinstance(getattr(circuits, name), ModuleType)
        assert name in dir(circuits)
    assert circuits.zoo.names()
    assert callable(circuits.construct.assemble)  # the function, not its submodule


def type_checking_imports(package: str) -> dict[str, tuple[str, ...]]:
    """The ``from .module import names`` of the ``if TYPE_CHECKING:`` block of a package."""
    path = Path(importlib.import_module(package).__file__ or "")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return {
                str(stmt.module): tuple(alias.name for alias in stmt.names)
                for stmt in node.body
                if isinstance(stmt, ast.ImportFrom) and stmt.module
            }
    raise AssertionError(f"{package} has no TYPE_CHECKING imports")


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_type_checkers_see_what_runs(package: str) -> None:
    """The names a type checker imports are the names the package resolves, and ``__all__``."""
    module = importlib.import_module(package)
    assert type_checking_imports(package) == module._EXPORTS
    exported = {name for names in module._EXPORTS.values() for name in names}
    modules = {name for name in module.__all__ if isinstance(getattr(module, name), ModuleType)}
    assert exported == set(module.__all__) - modules

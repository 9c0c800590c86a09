"""Lazy package namespaces (PEP 562): a public name imports its submodule on first access.

A package's ``__init__`` declares which submodule defines each of its names and hands the
package's ``__getattr__`` and ``__dir__`` to :func:`lazy_namespace`; ``import package`` then costs
nothing beyond the package itself, and heavy dependencies (sympy, networkx, graphviz, …) load
only with the first name that needs them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(
    package: str,
    exports: Mapping[str, Iterable[str]],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    ``exports`` maps a submodule (relative to ``package``) to the names it defines that the
    package re-exports; ``submodules`` are further submodules reachable as attributes. A resolved
    name is stored in the package's namespace, so each one is looked up only once.
    """
    origin = {name: module for module, names in exports.items() for name in names}
    modules = frozenset(submodules) | frozenset(exports)

    def resolve(name: str) -> Any:
        if name in origin:
            value = getattr(importlib.import_module(f".{origin[name]}", package), name)
        elif name in modules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def listing() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(origin) | modules)

    return resolve, listing

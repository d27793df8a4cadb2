"""A package's exported names, each imported from its submodule on first use (PEP 562).

A package ``__init__`` that imports every submodule makes ``import nlbench.sweep.spec`` load all of
``nlbench.sweep`` and ``nlbench.training`` first: Lightning, optuna and PyAV, seconds of imports, for a
report that only reads CSVs. With ``lazy_names`` the package still offers ``from nlbench.training import
train_run``, and pays for ``nlbench.training.run`` only then.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_names(package: str, where: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps each exported name to the submodule that
    defines it (``{"train_run": "run"}``: ``nlbench.training.run.train_run``)."""

    def __getattr__(name: str):
        if name not in where:
            # Also how ``from package import submodule`` finds a submodule not imported yet: it imports it next.
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # the next access is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__


__all__ = ["lazy_names"]

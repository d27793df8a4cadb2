"""Imports only go down: the package never imports the benchmark suites or the tests beside it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlbench"
ABOVE = ("benchmarks", "tests")  # folders of the repository that are not part of the installed package


def _imported(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_package_modules_import_nothing_from_above(path):
    upward = [name for name in _imported(ast.parse(path.read_text(), str(path))) if name.split(".")[0] in ABOVE]
    assert not upward, f"{path.relative_to(PACKAGE.parent)} imports {upward}"

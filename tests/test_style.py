"""House style that a linter does not check: no function longer than about a screen."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("inference", "training", "benchmarks")
MAX_LINES = 60


def long_functions(path: Path, root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """``file:line:name:length`` of each function or method in ``path`` longer than ``limit`` lines.

    The length runs from the ``def`` line to the end of the body, docstring included (decorators
    not); nested functions are counted on their own as well as within their parent.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(root)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append(f"{where}:{node.lineno}:{node.name}:{length}")
    return found


def test_the_check_measures_def_to_end_of_body(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    sample = tmp_path / "sample.py"
    sample.write_text(f"@decorator\ndef fits():\n{body}\n\n\nasync def too_long():\n{body}\n    return 1\n")
    assert long_functions(sample, tmp_path) == ["sample.py:64:too_long:61"]


def test_no_function_is_longer_than_60_lines():
    offenders = [
        line
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in long_functions(path)
    ]
    assert not offenders, f"functions over {MAX_LINES} lines (file:line:name:length):\n" + "\n".join(offenders)

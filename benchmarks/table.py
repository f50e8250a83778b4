"""The output of a benchmark: a Markdown table on stdout and its result as JSON on disk.

The tables are pasted into the README as they are, so every benchmark prints them one way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table of already formatted cells, one line per row.

    >>> print(markdown_table(["path", "sentences/s"], [["torch", "120"]]))
    | path | sentences/s |
    |---|---|
    | torch | 120 |
    """
    lines = [_row(header), "|" + "---|" * len(header)]
    lines += [_row(row) for row in rows]
    return "\n".join(lines)


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print :func:`markdown_table`."""
    print(markdown_table(header, rows))


def write_json(result: dict[str, Any], path: Path) -> Path:
    """Write ``result`` as indented JSON to ``path`` (its folder made if needed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"

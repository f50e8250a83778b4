"""Reading labelled sentences from JSONL or CSV, with file and line in every error."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.inputs import ContextLike, context_windows
from inference.labels import check_label


@dataclass(frozen=True)
class Example:
    """A labelled sentence; ``context`` holds its neighbours in the same document (readers give
    a :class:`~inference.inputs.Context` as wide as any window; each model reads its own part)."""

    doc: str
    idx: int
    text: str
    label: str
    context: ContextLike = None


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, row
        return
    if path.suffix != ".jsonl":
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl or .csv")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {err.msg}") from None


def _example(row: Any, where: str, lineno: int) -> Example:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object with text and label")
    for column in ("text", "label"):
        if row.get(column) in (None, ""):
            raise ValueError(f"{where}: missing column {column!r}")
    text = row["text"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: empty text")
    label = check_label(row["label"], where)
    doc = row.get("doc")
    idx = row.get("idx")
    if doc in (None, ""):
        # A row without a document is its own document: it gets no context.
        return Example(doc=f"{where}", idx=0, text=text, label=label)
    try:
        idx = int(str(idx))
    except ValueError:
        raise ValueError(f"{where}: idx must be an integer when doc is given") from None
    return Example(doc=str(doc), idx=idx, text=text, label=label)


def read_labelled(path: str | Path) -> list[Example]:
    """Read labelled rows (``text``, ``label``, optional ``doc`` and ``idx``) in document order.

    >>> read_labelled("data/corpus/dev.jsonl")[0].label  # doctest: +SKIP
    'claim'
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    examples: list[Example] = []
    seen: dict[tuple[str, int], int] = {}
    for lineno, row in _rows(path):
        example = _example(row, f"{path}:{lineno}", lineno)
        key = (example.doc, example.idx)
        if key in seen:
            raise ValueError(
                f"{path}:{lineno}: duplicate sentence doc={example.doc!r} idx={example.idx} "
                f"(first on line {seen[key]})"
            )
        seen[key] = lineno
        examples.append(example)
    if not examples:
        raise ValueError(f"{path}: no rows")
    return with_context(examples)


def with_context(examples: list[Example]) -> list[Example]:
    """Give each example its neighbours in its document (:func:`context_windows`, widest window)."""
    contexts = context_windows(
        [e.text for e in examples], [e.doc for e in examples], [e.idx for e in examples]
    )
    return [Example(e.doc, e.idx, e.text, e.label, c) for e, c in zip(examples, contexts, strict=True)]

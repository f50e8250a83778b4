"""Stand-off labels over the shared news datasets: ids and offsets in the repo, text read at run time.

A stand-off row is ``{"dataset", "doc", "idx", "start", "end", "label"}``; the
sentence is ``document_text(root, dataset, doc)[start:end]``. Supported datasets:

- ``polnear``: ``doc`` is ``<split>/<name>`` for ``polnear/data/<split>/text/<name>.txt``
- ``newsdiscourse``: ``doc`` is the path under ``newsdiscourse/extracted`` without ``.txt``;
  sentences are the dataset's own ``H``/``S<n>`` lines
- ``fnc1``: ``doc`` is ``<bodies file stem>/<Body ID>``, e.g. ``train_bodies/712``
"""

from __future__ import annotations

import csv
import json
import re
from functools import lru_cache
from pathlib import Path

from inference.labels import check_label
from inference.records import Example, with_context
from inference.sentences import Sentence, split_sentences

DATASETS = ("polnear", "newsdiscourse", "fnc1")
_ND_LINE = re.compile(r"^(?:H|S\d+)[ \t]+", re.MULTILINE)


@lru_cache(maxsize=8)
def _fnc_bodies(path: Path) -> dict[str, str]:
    csv.field_size_limit(10_000_000)
    with path.open(newline="", encoding="utf-8") as f:
        return {row["Body ID"]: row["articleBody"] for row in csv.DictReader(f)}


def document_path(root: Path, dataset: str, doc: str) -> Path:
    if ".." in Path(doc).parts:
        raise ValueError(f"document id {doc!r} must not leave the dataset folder")
    if dataset == "polnear":
        split, _, name = doc.partition("/")
        return root / "polnear" / "data" / split / "text" / f"{name}.txt"
    if dataset == "newsdiscourse":
        return root / "newsdiscourse" / "extracted" / f"{doc}.txt"
    if dataset == "fnc1":
        return root / "fnc1" / f"{doc.partition('/')[0]}.csv"
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


@lru_cache(maxsize=4096)
def document_text(root: Path, dataset: str, doc: str) -> str:
    """The full text of one document of a shared dataset."""
    path = document_path(root, dataset, doc)
    if not path.is_file():
        raise ValueError(f"{dataset} document {doc!r} not found at {path}; is the data root {root} right?")
    if dataset == "fnc1":
        body = _fnc_bodies(path).get(doc.partition("/")[2])
        if body is None:
            raise ValueError(f"fnc1 body {doc!r} not found in {path}")
        return body
    return path.read_text(encoding="utf-8")


def document_sentences(root: Path, dataset: str, doc: str) -> list[Sentence]:
    """The sentences of a document in reading order, with offsets into its text."""
    text = document_text(root, dataset, doc)
    if dataset != "newsdiscourse":
        return split_sentences(text)
    sentences = []
    for match in _ND_LINE.finditer(text):
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end < 0 else line_end
        content = text[match.end() : line_end].strip()
        if content:
            start = text.index(content, match.end())
            sentences.append(Sentence(content, start, start + len(content)))
    return sentences


def read_standoff(path: str | Path, root: str | Path) -> list[Example]:
    """Rebuild labelled examples from a stand-off file and the data root.

    >>> read_standoff("data/gold/test.jsonl", "../shared/datasets")[0].label  # doctest: +SKIP
    'other'
    """
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise ValueError(f"stand-off file {path} does not exist")
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist; stand-off labels need the shared datasets")
    examples = []
    seen: set[tuple[str, int]] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
                dataset, doc, idx = row["dataset"], row["doc"], int(row["idx"])
                start, end = int(row["start"]), int(row["end"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{where}: not a stand-off row ({type(err).__name__}: {err})") from None
            label = check_label(row.get("label"), where)
            text = document_text(root, dataset, doc)
            if not 0 <= start < end <= len(text):
                raise ValueError(f"{where}: span {start}-{end} outside {dataset} document {doc!r}")
            key = (f"{dataset}:{doc}", idx)
            if key in seen:
                raise ValueError(f"{where}: duplicate sentence {key}")
            seen.add(key)
            examples.append(Example(doc=key[0], idx=idx, text=text[start:end], label=label))
    if not examples:
        raise ValueError(f"{path}: no rows")
    return with_context(examples)


def is_standoff(path: str | Path) -> bool:
    """True when the first row of a JSONL file is a stand-off row (it has ``dataset``)."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and "dataset" in row and "start" in row
    return False

"""Stand-off labels over the shared news datasets: ids and offsets in the repo, text read at run time.

A stand-off row is ``{"dataset", "doc", "idx", "start", "end", "label"}``; the
sentence is ``document_text(root, dataset, doc)[start:end]``. Supported datasets:

- ``polnear``: ``doc`` is ``<split>/<name>`` for ``polnear/data/<split>/text/<name>.txt``
- ``newsdiscourse``: ``doc`` is the path under ``newsdiscourse/extracted`` without ``.txt``;
  sentences are the dataset's own ``H``/``S<n>`` lines
- ``fnc1``: ``doc`` is ``<bodies file stem>/<Body ID>``, e.g. ``train_bodies/712``

Three datasets hold one short document per row (its text: one or more sentences):

- ``emergent``: ``doc`` is ``<csv file stem>/<articleId>``, the row's ``articleHeadline``, e.g.
  ``url-versions-2015-06-14-clean-train/116a3920-c41c-11e4-883c-a7fa7a3c5066``
- ``liar``: ``doc`` is ``<tsv file stem>/<statement id>`` (the ID column without ``.json``), the
  row's statement, e.g. ``train/2635``
- ``clef2019``: CLEF 2019 CheckThat! task 1 (folder ``clef2019_checkthat_task1``); ``doc`` is
  ``<folder>/<tsv file stem>/<line_no>``, the line's text, e.g. ``training/20160209_msnbc_dem/12``
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

DATASETS = ("polnear", "newsdiscourse", "fnc1", "emergent", "liar", "clef2019")
# One document per row: the folder under the data root, and the file suffix of its tables.
TABLES = {
    "emergent": ("emergent", ".csv"),
    "liar": ("liar", ".tsv"),
    "clef2019": ("clef2019_checkthat_task1", ".tsv"),
}
_ND_LINE = re.compile(r"^(?:H|S\d+)[ \t]+", re.MULTILINE)


@lru_cache(maxsize=8)
def _fnc_bodies(path: Path) -> dict[str, str]:
    csv.field_size_limit(10_000_000)
    with path.open(newline="", encoding="utf-8") as f:
        return {row["Body ID"]: row["articleBody"] for row in csv.DictReader(f)}


@lru_cache(maxsize=32)
def _table(path: Path, dataset: str) -> dict[str, str]:
    """Row id -> text of one file of a one-document-per-row dataset."""
    if dataset == "emergent":
        with path.open(newline="", encoding="utf-8") as f:
            return {row["articleId"]: row["articleHeadline"] for row in csv.DictReader(f)}
    # LIAR and CLEF are plain tab-separated lines without quoting: quotes inside a statement
    # are text, so the csv module's quote handling would merge rows.
    rows: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError(f"{path}:{lineno}: expected tab-separated id, ..., text columns")
        key = fields[0].removesuffix(".json") if dataset == "liar" else fields[0]
        rows[key] = fields[2]
    return rows


def table_documents(root: Path, dataset: str, file: str) -> list[str]:
    """The document ids of one file of a one-document-per-row dataset, in file order.

    >>> table_documents(Path("../shared/datasets"), "liar", "train")[0]  # doctest: +SKIP
    'train/2635'
    """
    if dataset not in TABLES:
        raise ValueError(f"{dataset!r} has no per-row documents; expected one of {', '.join(TABLES)}")
    path = document_path(root, dataset, f"{file}/0")
    if not path.is_file():
        raise ValueError(f"{dataset} file {path} not found; is the data root {root} right?")
    return [f"{file}/{key}" for key in _table(path, dataset)]


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
    if dataset in TABLES:
        folder, suffix = TABLES[dataset]
        return root / folder / f"{doc.rpartition('/')[0]}{suffix}"
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
    if dataset in TABLES:
        row = _table(path, dataset).get(doc.rpartition("/")[2])
        if row is None:
            raise ValueError(f"{dataset} row {doc!r} not found in {path}")
        return row
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

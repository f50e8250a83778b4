"""Preparing annotation batches of real articles and merging hand labels back as stand-off gold.

Batches hold article text for the annotators and live outside the repository
(the shared datasets' text is never copied into it); only the merged
stand-off rows (dataset, doc, idx, offsets, label) are committed.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from inference.labels import check_label
from inference.sentences import Sentence
from inference.standoff import document_sentences

DENIAL_CUES = re.compile(
    r"\b(den(y|ies|ied|ial)|reject(s|ed)?|dismiss(es|ed)?|disput(e|es|ed)|refut(e|es|ed)|"
    r"rebut(s|ted)?|contradict(s|ed)?|not true|false(ly)?|untrue|baseless|propaganda|"
    r"pleaded not guilty|no evidence|categorically|groundless)\b",
    re.IGNORECASE,
)


def all_documents(root: Path) -> list[tuple[str, str]]:
    """Every (dataset, doc) that the stand-off loader can read."""
    docs = [
        ("polnear", f"{p.parent.parent.name}/{p.stem}")
        for p in sorted((root / "polnear" / "data").glob("*/text/*.txt"))
        if p.parent.parent.name in ("train", "dev", "test")
    ]
    docs += [
        ("newsdiscourse", str(p.relative_to(root / "newsdiscourse" / "extracted").with_suffix("")))
        for p in sorted((root / "newsdiscourse" / "extracted").rglob("*.txt"))
    ]
    import csv

    csv.field_size_limit(10_000_000)
    with (root / "fnc1" / "train_bodies.csv").open(newline="", encoding="utf-8") as f:
        docs += [("fnc1", f"train_bodies/{row['Body ID']}") for row in csv.DictReader(f)]
    return docs


def split_of(dataset: str, doc: str, dev: float = 0.1, test: float = 0.2) -> str:
    """A stable article-level split from a hash of the document id."""
    h = int(hashlib.sha1(f"{dataset}:{doc}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "dev" if h < test + dev else "train"


def prepare_batches(
    root: Path,
    out: Path,
    n_batches: int,
    per_batch: int = 150,
    denial_share: float = 0.6,
    exclude: set[tuple[str, str]] | None = None,
    seed: int = 0,
    max_sentences: int = 70,
    prefix: str = "g",
) -> list[Path]:
    """Write ``out/<prefix>NN.txt`` (articles to label) and ``.keys.jsonl`` (their stand-off ids)."""
    rng = random.Random(seed)
    exclude = exclude or set()
    docs = [d for d in all_documents(root) if d not in exclude]
    rng.shuffle(docs)
    with_cue: list[tuple[str, str, list[Sentence]]] = []
    without: list[tuple[str, str, list[Sentence]]] = []
    for dataset, doc in docs:
        sentences = document_sentences(root, dataset, doc)
        if not 4 <= len(sentences) <= max_sentences:
            continue
        cue = any(DENIAL_CUES.search(s.text) for s in sentences)
        (with_cue if cue else without).append((dataset, doc, sentences))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for b in range(n_batches):
        lines: list[str] = []
        keys: list[dict[str, object]] = []
        count, a = 0, 0
        while count < per_batch and (with_cue or without):
            pool = with_cue if (rng.random() < denial_share and with_cue) or not without else without
            dataset, doc, sentences = pool.pop()
            a += 1
            lines.append(f"=== ARTICLE {a} ({dataset}) ===")
            for idx, s in enumerate(sentences):
                k = len(keys)
                keys.append(
                    {"k": k, "dataset": dataset, "doc": doc, "idx": idx, "start": s.start, "end": s.end}
                )
                lines.append(f"[{k}] {s.text}")
            lines.append("")
            count += len(sentences)
        if not keys:
            break
        name = f"{prefix}{b:02d}"
        (out / f"{name}.txt").write_text("\n".join(lines))
        (out / f"{name}.keys.jsonl").write_text("".join(json.dumps(k) + "\n" for k in keys))
        written.append(out / f"{name}.txt")
    return written


def merge_labels(keys_path: Path, labels_path: Path, annotator: str) -> list[dict[str, object]]:
    """Join an annotator's ``{"k", "label"}`` rows with the batch keys into stand-off rows."""
    keys = [json.loads(line) for line in keys_path.read_text().splitlines() if line.strip()]
    labels: dict[int, str] = {}
    for lineno, line in enumerate(labels_path.read_text().splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            labels[int(row["k"])] = check_label(row["label"], f"{labels_path}:{lineno}")
    missing = [k["k"] for k in keys if k["k"] not in labels]
    if missing:
        raise ValueError(f"{labels_path}: no label for keys {missing[:10]} ({len(missing)} in all)")
    return [
        {key: k[key] for key in ("dataset", "doc", "idx", "start", "end")}
        | {"label": labels[k["k"]], "annotator": annotator, "split": split_of(k["dataset"], k["doc"])}
        for k in keys
    ]


def merge_batch(batch_dir: Path, name: str, pass_: str, out_dir: Path) -> int:
    """Write ``out_dir/<name>.<pass>.jsonl`` (stand-off) from a finished batch; return its size."""
    rows = merge_labels(batch_dir / f"{name}.keys.jsonl", batch_dir / f"{name}.labels.{pass_}.jsonl", pass_)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.{pass_}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def _key(row: dict[str, object]) -> tuple[object, object, object]:
    return (row["dataset"], row["doc"], row["idx"])


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _reanchor(rows: list[dict[str, Any]], gold_dir: Path) -> list[dict[str, Any]]:
    """Move rows onto the current splitter's sentences (``reanchored.jsonl``: old idx -> new
    idx, span and label); halves of a sentence the splitter now keeps whole become one row."""
    moves = {(r["dataset"], r["doc"], r["old_idx"]): r for r in _records(gold_dir / "reanchored.jsonl")}
    out: dict[tuple[object, object, object], dict[str, Any]] = {}
    for row in rows:
        move = moves.get(_key(row))
        if move is not None:
            row = row | {k: move[k] for k in ("idx", "start", "end", "label")}
        out.setdefault(_key(row), row)
    return list(out.values())


RULINGS = ("candidates_ruling.jsonl", "error_analysis/adjudication.jsonl", "polls_requests_ruling.jsonl")


def _rulings(gold_dir: Path) -> dict[tuple[object, object, object], str]:
    """The label each later ruling gives a row, later files winning (see :func:`build_gold`)."""
    out = {}
    for name in RULINGS:
        for r in _records(gold_dir / name):
            if r.get("decision", "changed") == "changed":
                out[_key(r)] = check_label(r["label"], name)
    return out


def build_gold(gold_dir: Path) -> dict[str, dict[str, int]]:
    """Write ``gold_dir/{train,dev,test}.jsonl`` from first-pass parts and the later records.

    In order: the adjudicated label where a second pass disagreed (``adjudicated.jsonl``), the
    re-anchoring onto the current sentence splitter (``reanchored.jsonl``), then the later
    rulings of the label guide, each a file of changed rows: the candidates ruling
    (``candidates_ruling.jsonl``), the gold errors found by the error analysis and confirmed by
    a second reader (``error_analysis/adjudication.jsonl``, rows with ``decision: changed``), and
    the polls and rejected-requests rulings (``polls_requests_ruling.jsonl``).
    """
    from inference.labels import label_counts

    rulings = {
        _key(r): check_label(r["label"], "adjudicated.jsonl")
        for r in _records(gold_dir / "adjudicated.jsonl")
    }
    rows: list[dict[str, Any]] = []
    for part in sorted((gold_dir / "parts").glob("*.a.jsonl")):
        for row in _records(part):
            row["label"] = rulings.get(_key(row), row["label"])
            row.pop("annotator", None)
            rows.append(row)
    ruling = _rulings(gold_dir)
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    labels: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for row in _reanchor(rows, gold_dir):
        row["label"] = ruling.get(_key(row), row["label"])
        split = row.pop("split")
        splits[split].append(json.dumps(row))
        labels[split].append(row["label"])
    for split, lines in splits.items():
        (gold_dir / f"{split}.jsonl").write_text("".join(r + "\n" for r in lines))
    return {split: label_counts(values) for split, values in labels.items()}


def agreement(gold_dir: Path) -> dict[str, object]:
    """Cohen's kappa and per-class F1 between the first and second pass, where both exist."""
    from sklearn.metrics import cohen_kappa_score, f1_score

    from inference.labels import LABELS

    first: dict[tuple[object, object, object], str] = {}
    second: dict[tuple[object, object, object], str] = {}
    for part in sorted((gold_dir / "parts").glob("*.a.jsonl")):
        first |= {_key(r): r["label"] for r in map(json.loads, part.read_text().splitlines())}
    for part in sorted((gold_dir / "second_pass").glob("*.b.jsonl")):
        second |= {_key(r): r["label"] for r in map(json.loads, part.read_text().splitlines())}
    keys = sorted(set(first) & set(second), key=str)
    a = [first[k] for k in keys]
    b = [second[k] for k in keys]
    f1 = f1_score(a, b, labels=list(LABELS), average=None, zero_division=0)
    return {
        "n": len(keys),
        "raw_agreement": sum(x == y for x, y in zip(a, b, strict=True)) / max(1, len(keys)),
        "cohen_kappa": float(cohen_kappa_score(a, b, labels=list(LABELS))),
        "per_class_f1": {label: float(v) for label, v in zip(LABELS, f1, strict=True)},
        "disagreements": [
            {"dataset": k[0], "doc": k[1], "idx": k[2], "a": first[k], "b": second[k]}
            for k in keys
            if first[k] != second[k]
        ],
    }

"""The unlabelled pool: stand-off sentences of train-split articles, for a teacher to label.

A pool row is ``{"dataset", "doc", "idx", "start", "end"}`` (no text, no label): sentence
``idx`` of ``document_sentences(root, dataset, doc)``. Only documents whose article-level split
(``training.annotation.split_of``) is train, and none that appears in the gold dev or test
files, are drawn. Every sentence of the gold-train articles is in the pool (the teacher's soft
labels on them add to their hard labels); the rest of the budget is shared evenly between
the sources, whole documents at a time, so that small sources are not crowded out.

    python -m training.pool --data-root ../shared/datasets --out data/pool/pool.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.inputs import previous_sentences
from inference.standoff import document_sentences, table_documents
from training.annotation import all_documents, split_of

SOURCES = ("polnear", "newsdiscourse", "fnc1", "emergent", "liar", "clef2019")
MIN_WORDS = 3
MAX_CHARS = 1500
# About 40k sentences: what the teacher can label in ~30 minutes on 2 cores (README: Distillation).
DEFAULT_MAX_SENTENCES = 40_000
KEYS = ("dataset", "doc", "idx", "start", "end")
Doc = tuple[str, str]


@dataclass(frozen=True)
class PoolSentence:
    """A pool row with its sentence and the sentence before it in its document (None: the first)."""

    dataset: str
    doc: str
    idx: int
    start: int
    end: int
    text: str
    context: str | None

    @property
    def key(self) -> tuple[str, int]:
        """The training examples' key for this sentence: ``("<dataset>:<doc>", idx)``."""
        return f"{self.dataset}:{self.doc}", self.idx


def candidate_documents(root: Path) -> list[Doc]:
    """Every document of the pool's sources, official train files only for the row datasets."""
    docs = all_documents(root)  # polnear, newsdiscourse, fnc1 bodies
    docs += [
        ("emergent", d) for d in table_documents(root, "emergent", "url-versions-2015-06-14-clean-train")
    ]
    docs += [("liar", d) for d in table_documents(root, "liar", "train")]
    clef = sorted((root / "clef2019_checkthat_task1" / "training").glob("*.tsv"))
    if not clef:
        raise ValueError(
            f"no CLEF 2019 training files under {root / 'clef2019_checkthat_task1' / 'training'}"
        )
    for path in clef:
        docs += [("clef2019", d) for d in table_documents(root, "clef2019", f"training/{path.stem}")]
    return docs


def standoff_documents(paths: Iterable[Path]) -> set[Doc]:
    """The (dataset, doc) pairs a stand-off file names (a gold split)."""
    docs: set[Doc] = set()
    for path in paths:
        if not path.is_file():
            raise ValueError(f"stand-off file {path} does not exist")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                docs.add((row["dataset"], row["doc"]))
    return docs


def usable(text: str) -> bool:
    """Long enough to say something, short enough not to be a splitting accident."""
    return len(text.split()) >= MIN_WORDS and len(text) <= MAX_CHARS


def document_rows(root: Path, dataset: str, doc: str) -> list[dict[str, object]]:
    """The usable sentences of one document as pool rows (``idx``: its place among all sentences)."""
    return [
        {"dataset": dataset, "doc": doc, "idx": idx, "start": s.start, "end": s.end}
        for idx, s in enumerate(document_sentences(root, dataset, doc))
        if usable(s.text)
    ]


def fair_shares(available: dict[str, int], budget: int) -> dict[str, int]:
    """An even split of ``budget``; what a small source cannot fill goes to the others.

    >>> fair_shares({"a": 10, "b": 100, "c": 100}, 90)
    {'a': 10, 'b': 40, 'c': 40}
    """
    shares = dict.fromkeys(available, 0)
    open_ = [k for k in available if available[k] > 0]
    left = budget
    while open_ and left > 0:
        each = max(1, left // len(open_))
        for key in list(open_):
            take = min(each, available[key] - shares[key], left)
            shares[key] += take
            left -= take
            if shares[key] == available[key]:
                open_.remove(key)
    return shares


def _eligible(root: Path, gold: set[Doc], excluded: set[Doc]) -> list[Doc]:
    """Train-split documents outside the held-out gold; ``ValueError`` if a gold-train one is not."""
    docs = [d for d in candidate_documents(root) if split_of(*d) == "train" and d not in excluded]
    stray = sorted(gold - set(docs))
    if stray:
        raise ValueError(f"gold-train documents outside the pool's train split or unreadable: {stray[:3]}")
    return docs


def build_pool(
    root: Path,
    gold_train: Path,
    held_out: Sequence[Path],
    max_sentences: int = DEFAULT_MAX_SENTENCES,
    seed: int = 0,
) -> tuple[list[dict[str, object]], dict[str, dict[str, int]]]:
    """The pool rows (in source, document, sentence order) and per-source counts.

    >>> rows, counts = build_pool(Path("../shared/datasets"), Path("data/gold/train.jsonl"),
    ...                           [Path("data/gold/dev.jsonl"), Path("data/gold/test.jsonl")])  # doctest: +SKIP
    >>> sorted(rows[0])  # doctest: +SKIP
    ['dataset', 'doc', 'end', 'idx', 'start']
    """
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist; the pool is drawn from the shared datasets")
    gold = standoff_documents([gold_train])
    docs = _eligible(root, gold, standoff_documents(held_out))
    rows_of = {d: document_rows(root, *d) for d in docs}
    chosen = [d for d in docs if d in gold]
    budget = max_sentences - sum(len(rows_of[d]) for d in chosen)
    if budget < 0:
        raise ValueError(f"--max-sentences {max_sentences} is below the gold-train sentences alone")
    rest = {s: sorted(d for d in docs if d[0] == s and d not in gold and rows_of[d]) for s in SOURCES}
    available = {s: sum(len(rows_of[d]) for d in rest[s]) for s in SOURCES}
    shares = fair_shares(available, budget)
    for source in SOURCES:
        order = rest[source]
        random.Random(f"{seed}:{source}").shuffle(order)  # a str seed is stable across processes
        taken = 0
        for doc in order:
            if taken + len(rows_of[doc]) <= shares[source]:
                chosen.append(doc)
                taken += len(rows_of[doc])
    chosen.sort(key=lambda d: (SOURCES.index(d[0]), d[1]))
    rows = [row for d in chosen for row in rows_of[d]]
    counts = {
        s: {
            "documents": sum(1 for d in chosen if d[0] == s),
            "sentences": sum(len(rows_of[d]) for d in chosen if d[0] == s),
            "gold_train_sentences": sum(len(rows_of[d]) for d in chosen if d[0] == s and d in gold),
            "available": available[s] + sum(len(rows_of[d]) for d in gold if d[0] == s),
        }
        for s in SOURCES
    }
    return rows, counts


def read_pool(path: Path) -> list[dict[str, object]]:
    """Pool rows (or any stand-off rows: extra keys are kept) with their keys checked."""
    if not path.is_file():
        raise ValueError(f"pool file {path} does not exist")
    rows: list[dict[str, object]] = []
    seen: set[tuple[object, object, object]] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["dataset"]), str(row["doc"]), int(row["idx"]))
            int(row["start"]), int(row["end"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{lineno}: not a pool row ({type(err).__name__}: {err})") from None
        if key in seen:
            raise ValueError(f"{path}:{lineno}: duplicate sentence {key}")
        seen.add(key)
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def with_text(rows: Sequence[dict[str, object]], root: Path) -> list[PoolSentence]:
    """Each row's sentence and the previous sentence of its document, read from the data root.

    The context is the document's own previous sentence (``previous_sentences`` over all of its
    sentences), also where that one was too short to be in the pool: what ``analyze`` would feed.
    """
    out: list[PoolSentence] = []
    cache: dict[Doc, tuple[list[tuple[int, int, str]], list[str | None]]] = {}
    for row in rows:
        dataset, doc, idx = str(row["dataset"]), str(row["doc"]), int(str(row["idx"]))
        if (dataset, doc) not in cache:
            sentences = document_sentences(root, dataset, doc)
            spans = [(s.start, s.end, s.text) for s in sentences]
            cache = {(dataset, doc): (spans, previous_sentences([s.text for s in sentences]))}
        spans, contexts = cache[(dataset, doc)]
        start, end = int(str(row["start"])), int(str(row["end"]))
        if not 0 <= idx < len(spans) or spans[idx][:2] != (start, end):
            raise ValueError(
                f"{dataset} {doc!r} sentence {idx} ({start}-{end}) no longer matches the sentence "
                "splitter; rebuild the pool (python -m training.pool)"
            )
        out.append(PoolSentence(dataset, doc, idx, start, end, spans[idx][2], contexts[idx]))
    return out


def write_rows(rows: Iterable[dict[str, object]], out: Path) -> None:
    """Write JSONL rows atomically (a temporary file renamed into place)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.pool",
        description="Write the unlabelled pool (stand-off sentences of train-split articles).",
    )
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=Path("data/pool/pool.jsonl"))
    parser.add_argument("--gold-train", type=Path, default=Path("data/gold/train.jsonl"))
    parser.add_argument(
        "--exclude",
        type=Path,
        nargs="+",
        default=[Path("data/gold/dev.jsonl"), Path("data/gold/test.jsonl")],
        help="stand-off files whose documents never enter the pool (default: gold dev and test)",
    )
    parser.add_argument("--max-sentences", type=int, default=DEFAULT_MAX_SENTENCES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rows, counts = build_pool(
            args.data_root, args.gold_train, args.exclude, args.max_sentences, args.seed
        )
    except ValueError as err:
        parser.exit(2, f"training.pool: error: {err}\n")
    write_rows(rows, args.out)
    print(f"{'source':<14} {'documents':>9} {'sentences':>9} {'gold-train':>10} {'available':>9}")
    for source, c in counts.items():
        print(
            f"{source:<14} {c['documents']:>9} {c['sentences']:>9} "
            f"{c['gold_train_sentences']:>10} {c['available']:>9}"
        )
    print(f"{'total':<14} {sum(c['documents'] for c in counts.values()):>9} {len(rows):>9}")
    print(f"pool written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

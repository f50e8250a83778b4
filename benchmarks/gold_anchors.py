"""Check that every gold row is a sentence of the current splitter, in order.

    python -m benchmarks.gold_anchors [--gold-dir data/gold] [--data-root ../shared/datasets]

For each document of ``{train,dev,test}.jsonl`` the rows must be exactly
``document_sentences(root, dataset, doc)``: one row per sentence, ``idx`` its
position, ``start``/``end`` its offsets. Training pairs a sentence with the row
before it, so a row anchored by an older splitter would teach a context that
``analyze`` never produces. Prints each problem and exits 1 if there is any (2 if the data is missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from inference.standoff import document_sentences

SPLITS = ("train", "dev", "test")


def _doc_problems(root: Path, dataset: str, doc: str, rows: list[dict[str, int]]) -> list[str]:
    spans = [(s.start, s.end) for s in document_sentences(root, dataset, doc)]
    problems: list[str] = []
    if len(rows) != len(spans):
        problems.append(f"{dataset}:{doc}: {len(rows)} gold rows, splitter gives {len(spans)} sentences")
    for position, row in enumerate(rows):
        got = (row["idx"], row["start"], row["end"])
        if row["idx"] != position:
            problems.append(f"{dataset}:{doc}: row {position} has idx {row['idx']}")
        elif position >= len(spans) or spans[position] != got[1:]:
            want = spans[position] if position < len(spans) else "no sentence"
            problems.append(f"{dataset}:{doc}: idx {position} span {got[1]}-{got[2]}, splitter gives {want}")
    return problems


def anchor_problems(gold_file: str | Path, root: str | Path) -> list[str]:
    """Problems where ``gold_file``'s rows differ from the splitter's sentences; empty when all match.

    >>> anchor_problems("data/gold/dev.jsonl", "../shared/datasets")  # doctest: +SKIP
    []
    """
    gold_file, root = Path(gold_file), Path(root)
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist; the anchor check needs the shared datasets")
    docs: dict[tuple[str, str], list[dict[str, int]]] = defaultdict(list)
    for line in gold_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            docs[(row["dataset"], row["doc"])].append(row)
    problems: list[str] = []
    for (dataset, doc), rows in docs.items():
        found = _doc_problems(root, dataset, doc, rows)
        problems.extend(f"{gold_file.name}: {p}" for p in found)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check every split; print problems; 0 when all rows match, 1 otherwise, 2 when data is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold-dir", type=Path, default=Path("data/gold"))
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    args = parser.parse_args(argv)
    try:
        problems = [p for s in SPLITS for p in anchor_problems(args.gold_dir / f"{s}.jsonl", args.data_root)]
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {', '.join(SPLITS)} under {args.gold_dir}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""A seeded sample of a model's errors on stand-off gold, written stand-off (no text) for reading.

    python -m benchmarks.errors --model models/default --data data/gold/test.jsonl \
        --sample 200 --out data/gold/error_analysis/sample.jsonl

Each row is the gold row (dataset, doc, idx, start, end, label) plus ``predicted`` and the
model's ``score``; readers open the sentence in its article through the data root. Prints the
confusion of the sampled errors against all errors, so the sample can be seen to be fair.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from inference.predict import Classifier
from inference.standoff import read_standoff


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def errors(model: str, data: Path, root: str) -> tuple[list[dict[str, Any]], int]:
    """Every gold row the model gets wrong (with ``predicted`` and ``score``), and the row count."""
    examples = read_standoff(data, root)
    predictions = Classifier.load(model).predict([e.text for e in examples], [e.context for e in examples])
    by_key = {(e.doc, e.idx): p for e, p in zip(examples, predictions, strict=True)}
    wrong = []
    for row in _rows(data):
        p = by_key[(f"{row['dataset']}:{row['doc']}", int(row["idx"]))]
        if p.label != row["label"]:
            wrong.append({**row, "predicted": p.label, "score": round(p.score, 4)})
    return wrong, len(examples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, default=Path("data/gold/test.jsonl"))
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    wrong, total = errors(args.model, args.data, args.data_root)
    sample = random.Random(args.seed).sample(wrong, min(args.sample, len(wrong)))
    sample.sort(key=lambda r: (r["dataset"], r["doc"], r["idx"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in sample), encoding="utf-8")
    print(f"{len(wrong)} errors in {total} sentences; {len(sample)} sampled into {args.out}")
    pairs = Counter((r["label"], r["predicted"]) for r in wrong)
    sampled = Counter((r["label"], r["predicted"]) for r in sample)
    print(f"{'gold -> predicted':<40} {'all':>5} {'sample':>6}")
    for (gold, pred), n in pairs.most_common():
        print(f"{gold + ' -> ' + pred:<40} {n:>5} {sampled[(gold, pred)]:>6}")


if __name__ == "__main__":
    main()

"""Building the corpus splits: the written articles in ``data/corpus/parts`` go to train/dev/test by article."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from inference.labels import label_counts
from inference.records import read_labelled


def corpus_split(doc: str, dev: float = 0.1, test: float = 0.1) -> str:
    h = int(hashlib.sha1(doc.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "dev" if h < test + dev else "train"


def build_corpus(parts: Path, out: Path) -> dict[str, dict[str, int]]:
    """Validate every part file and write ``train/dev/test.jsonl``; return label counts per split."""
    rows: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    labels: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    docs: set[str] = set()
    for part in sorted(parts.glob("*.jsonl")):
        examples = read_labelled(part)
        part_docs = {e.doc for e in examples}
        if part_docs & docs:
            raise ValueError(
                f"{part}: document ids also used in another part: {sorted(part_docs & docs)[:3]}"
            )
        docs |= part_docs
        for e in examples:
            split = corpus_split(e.doc)
            rows[split].append(json.dumps({"doc": e.doc, "idx": e.idx, "text": e.text, "label": e.label}))
            labels[split].append(e.label)
    for split, lines in rows.items():
        (out / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    return {split: label_counts(values) for split, values in labels.items()}


if __name__ == "__main__":
    counts = build_corpus(Path("data/corpus/parts"), Path("data/corpus"))
    for split, c in counts.items():
        print(split, sum(c.values()), c)

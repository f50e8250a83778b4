"""Counts for the data card: corpus and gold per split and label, gold per dataset, agreement, weak precision.

python -m benchmarks.data_stats   # prints Markdown tables, writes benchmarks/results/data_stats.json
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from inference.labels import LABELS
from training.annotation import agreement
from training.weak import ADAPTERS, precision_against_gold, read_weak

ROOT = Path("../shared/datasets")


def table(title: str, rows: dict[str, Counter[str]]) -> str:
    lines = [
        f"**{title}**",
        "",
        "| | " + " | ".join(LABELS) + " | total | articles |",
        "|---" * (len(LABELS) + 3) + "|",
    ]
    for name, c in rows.items():
        lines.append(
            f"| {name} | "
            + " | ".join(str(c[label]) for label in LABELS)
            + f" | {sum(c[x] for x in LABELS)} | {c['_docs']} |"
        )
    return "\n".join(lines) + "\n"


def count(rows: list[dict[str, object]]) -> Counter[str]:
    c: Counter[str] = Counter(str(r["label"]) for r in rows)
    c["_docs"] = len({(r.get("dataset"), r["doc"]) for r in rows})
    return c


def main() -> None:
    out: dict[str, object] = {}
    corpus = {
        s: [json.loads(x) for x in Path(f"data/corpus/{s}.jsonl").read_text().splitlines()]
        for s in ("train", "dev", "test")
    }
    gold = {
        s: [json.loads(x) for x in Path(f"data/gold/{s}.jsonl").read_text().splitlines()]
        for s in ("train", "dev", "test")
    }
    corpus_rows = {s: count(r) for s, r in corpus.items()} | {
        "all": count([r for v in corpus.values() for r in v])
    }
    gold_rows = {s: count(r) for s, r in gold.items()} | {"all": count([r for v in gold.values() for r in v])}
    all_gold = [r for v in gold.values() for r in v]
    by_dataset = {
        d: count([r for r in all_gold if r["dataset"] == d])
        for d in sorted({str(r["dataset"]) for r in all_gold})
    }
    print(table("Written corpus", corpus_rows))
    print(table("Gold (real news), by split", gold_rows))
    print(table("Gold (real news), by dataset", by_dataset))
    agree = agreement(Path("data/gold"))
    agree.pop("disagreements")
    print("**Second pass**:", json.dumps(agree), "\n")
    golds = [Path(f"data/gold/{s}.jsonl") for s in ("train", "dev", "test")]
    weak = {}
    print("| adapter | sentences | " + " | ".join(f"{x} (n, precision)" for x in LABELS) + " |")
    print("|---" * (len(LABELS) + 2) + "|")
    for name in ADAPTERS:
        size = len(read_weak(name, ROOT))
        prec = precision_against_gold(name, ROOT, golds)
        weak[name] = {"sentences": size, "precision": prec}
        cells = [f"{prec[x]['n']}, {prec[x]['precision']:.2f}" if x in prec else "–" for x in LABELS]
        print(f"| {name} | {size} | " + " | ".join(cells) + " |")
    out |= {
        "corpus": corpus_rows,
        "gold": gold_rows,
        "gold_by_dataset": by_dataset,
        "agreement": agree,
        "weak": weak,
    }
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/data_stats.json").write_text(json.dumps(out, indent=2, default=dict) + "\n")


if __name__ == "__main__":
    main()

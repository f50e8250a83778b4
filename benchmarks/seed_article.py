"""How a model labels the seed article against the table in LABELS.md.

    python -m benchmarks.seed_article --model models/quickstart

Prints one row per table sentence (expected, predicted, match) and writes
``benchmarks/results/seed_article_<model name>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from inference import Classifier

LABELS_MD = Path("../shared/LABELS.md")
SEED = Path("../shared/seed_article.txt")


def expected_rows(labels_md: Path) -> list[tuple[str, str]]:
    section = labels_md.read_text().split("## The seed article, labelled")[1]
    rows = re.findall(r"^\| (.+?) \| (\w+) \|$", section, flags=re.MULTILINE)
    return [(s, label) for s, label in rows if label != "label"]


def seed_rows(
    clf: Classifier, labels_md: Path = LABELS_MD, seed_article: Path = SEED
) -> list[dict[str, object]]:
    """Each table sentence of LABELS.md with the model's label for it."""
    analysed = clf.analyze(seed_article.read_text())
    results = []
    used: set[int] = set()
    for abridged, expected in expected_rows(labels_md):
        prefix = abridged.split("…")[0].strip()
        i = next(i for i, s in enumerate(analysed) if i not in used and s.sentence.startswith(prefix))
        used.add(i)
        s = analysed[i]
        results.append({"sentence": s.sentence, "expected": expected, "predicted": s.label, "score": s.score})
    return results


def agreeing(rows: list[dict[str, object]]) -> int:
    return sum(r["expected"] == r["predicted"] for r in rows)


def seed_agreement(clf: Classifier) -> tuple[int, int]:
    rows = seed_rows(clf)
    return agreeing(rows), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--labels-md", type=Path, default=LABELS_MD)
    parser.add_argument("--seed-article", type=Path, default=SEED)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    clf = Classifier.load(args.model)
    results = seed_rows(clf, args.labels_md, args.seed_article)
    agree = agreeing(results)
    for r in results:
        mark = "ok " if r["expected"] == r["predicted"] else "MISS"
        print(f"{mark} {r['expected']:<19}{r['predicted']:<19}{r['score']:.2f}  {r['sentence'][:70]}")
    print(f"\n{agree}/{len(results)} sentences agree with LABELS.md ({clf.info.name})")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"seed_article_{clf.info.name}.json"
    out.write_text(
        json.dumps({"model": clf.info.name, "agree": agree, "total": len(results), "rows": results}, indent=2)
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

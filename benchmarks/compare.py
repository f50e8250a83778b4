"""Compare trained models on the real-news gold test split and the seed article.

    python -m benchmarks.compare [--models models/exp-*] [--data data/gold/test.jsonl]

Prints a Markdown table (macro-F1 and per-class F1) and writes
``benchmarks/results/experiments.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import yaml

from benchmarks.seed_article import seed_agreement
from benchmarks.table import print_table
from inference import Classifier
from inference.evaluate import compute_metrics
from inference.readers import load_examples


def describe(model_dir: Path) -> str:
    config = yaml.safe_load((model_dir / "train_config.yaml").read_text())
    parts = []
    for source in config["data"]["train"]:
        name = (
            Path(source["path"]).parts[1]
            if source.get("kind", "labelled") != "weak"
            else f"weak:{source['path']}"
        )
        limit = f"[:{source['limit']}]" if source.get("limit") else ""
        parts.append(name + limit)
    extras = []
    if config["model"]["context"]:
        extras.append("context")
    extras.append(f"weights={config['train']['class_weighting']}")
    if config["train"].get("aux_weight"):
        extras.append(f"aux heads x{config['train']['aux_weight']}")
    extras.append(f"{config['train']['epochs']} epochs")
    return " + ".join(dict.fromkeys(parts)) + f" ({', '.join(extras)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[*sorted(glob.glob("models/exp-*")), "models/quickstart", "models/default"],
    )
    parser.add_argument("--data", default="data/gold/test.jsonl")
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/experiments.json"))
    args = parser.parse_args()

    examples = load_examples(args.data, args.data_root)
    rows = []
    for model in args.models:
        path = Path(model)
        if not (path / "model.safetensors").is_file():
            continue
        clf = Classifier.load(path)
        predictions = clf.predict([e.text for e in examples], [e.context for e in examples])
        metrics = compute_metrics([e.label for e in examples], [p.label for p in predictions])
        seed = seed_agreement(clf)
        train_sizes = json.loads((path / "metrics.json").read_text())["data"]["sizes"]["train"]
        rows.append(
            {
                "model": path.name,
                "train": describe(path),
                "train_sentences": train_sizes,
                "macro_f1": metrics["macro_f1"],
                "accuracy": metrics["accuracy"],
                "f1": {k: v["f1"] for k, v in metrics["per_class"].items()},
                "seed_article": f"{seed[0]}/{seed[1]}",
            }
        )
    print(f"real-news gold test: {args.data} (n={len(examples)})\n")
    header = ["model", "training data", "train sentences", "macro-F1", "claim", "denial", "official", "other"]
    cells = [
        [
            r["model"],
            r["train"],
            r["train_sentences"],
            f"{r['macro_f1']:.3f}",
            *(f"{r['f1'][label]:.3f}" for label in ("claim", "denial", "official_statement", "other")),
            r["seed_article"],
        ]
        for r in rows
    ]
    print_table([*header, "seed article"], cells)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": args.data, "n": len(examples), "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

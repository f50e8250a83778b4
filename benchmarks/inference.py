"""Inference speed and accuracy: a `pipeline` baseline against our torch and ONNX paths.

    python -m benchmarks.inference --model models/default [--quick]

Every path labels the same real sentences (the real-news gold test split, or the corpus test
split when ../shared/datasets is absent) on this machine, in one run. Batch throughput is
sentences per second over all of them; latency is one sentence per call (p50/p99). A model
trained with context gets each sentence's previous sentence on every path. Prints a
table and writes ``benchmarks/results/inference.json``. ``--quick`` uses 400 sentences and
100 latency calls (under two minutes on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, Python puts benchmarks/ first on the path, where inference.py would shadow the
# `inference` package: the repository root goes first instead.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from inference.backends import ONNX_FILES, default_threads
from inference.evaluate import compute_metrics
from inference.export import export_onnx
from inference.model import read_info
from inference.predict import Classifier
from inference.readers import load_examples
from inference.records import Example

RESULTS = Path("benchmarks/results")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sentences(
    data: str | None, data_root: str, limit: int | None, seed: int = 0
) -> tuple[str, list[Example]]:
    """The labelled sentences to run on, and where they came from."""
    candidates = [data] if data else ["data/gold/test.jsonl", "data/corpus/test.jsonl"]
    for path in candidates:
        try:
            examples = load_examples(path, data_root)
        except ValueError as err:  # stand-off gold without its data root
            print(f"skipping {path}: {err}")
            continue
        if limit and limit < len(examples):
            examples = random.Random(seed).sample(examples, limit)
        return path, examples
    raise SystemExit("no labelled sentences found")


Run = Callable[[list[Example]], list[str]]


def pipeline_path(model_dir: Path, context: bool) -> Run:
    """What a user would write first: `pipeline("text-classification")` with its defaults."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), device="cpu")
    if context:  # the pair the model was trained on: sentence, then the one before it ("" if none)
        # truncation=True: a long pair passes BERT's 512 positions and crashes the pipeline otherwise.
        pairs = lambda rows: [{"text": e.text, "text_pair": e.context or ""} for e in rows]  # noqa: E731
        return lambda rows: [r["label"] for r in pipe(pairs(rows), truncation=True)]
    return lambda rows: [r["label"] for r in pipe([e.text for e in rows])]


def our_path(model_dir: Path, backend: str, quantize: str) -> Run:
    clf = Classifier.load(model_dir, backend=backend, quantize=quantize)
    return lambda rows: [p.label for p in clf.predict([e.text for e in rows], [e.context for e in rows])]


def measure(run: Run, examples: list[Example], calls: int) -> dict[str, Any]:
    run(examples[:8])  # warm-up: first calls allocate and pick kernels
    started = time.perf_counter()
    labels = run(examples)
    seconds = time.perf_counter() - started
    latencies = []
    for example in examples[:calls]:
        t0 = time.perf_counter()
        run([example])
        latencies.append((time.perf_counter() - t0) * 1000)
    metrics = compute_metrics([e.label for e in examples], labels)
    return {
        "sentences_per_s": round(len(examples) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "macro_f1": round(metrics["macro_f1"], 4),
        "f1": {label: round(m["f1"], 4) for label, m in metrics["per_class"].items()},
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument(
        "--data", help="labelled JSONL or stand-off gold (default: gold test, else corpus test)"
    )
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--quick", action="store_true", help="400 sentences, 100 latency calls")
    parser.add_argument("--limit", type=int, help="at most this many sentences")
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()

    model_dir = Path(args.model)
    limit = 400 if args.quick else args.limit
    calls = 100 if args.quick else args.latency_calls
    source, examples = sentences(args.data, args.data_root, limit)
    threads = default_threads()
    torch.set_num_threads(threads)
    for quantize in ("none", "int8"):
        if not (model_dir / ONNX_FILES[quantize]).is_file():
            print(f"exporting {model_dir / ONNX_FILES[quantize]}")
            export_onnx(model_dir, quantize)

    context = read_info(model_dir).context
    paths = {
        "pipeline": lambda: pipeline_path(model_dir, context),
        "torch": lambda: our_path(model_dir, "torch", "none"),
        "onnx_fp32": lambda: our_path(model_dir, "onnx", "none"),
        "onnx_int8": lambda: our_path(model_dir, "onnx", "int8"),
    }
    runs = []
    for name, build in paths.items():
        print(f"{name}: {len(examples)} sentences ...", flush=True)
        runs.append({"name": name, **measure(build(), examples, calls)})

    base = runs[0]["sentences_per_s"]
    with_context = ", each with its previous sentence" if context else ""
    print(f"\n{cpu_name()}, {threads} threads; {len(examples)} sentences from {source}{with_context}\n")
    print(
        "| path | sentences/s | × pipeline | p50 ms | p99 ms | macro-F1 | claim | denial | official | other |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        f1 = r["f1"]
        print(
            f"| {r['name']} | {r['sentences_per_s']:.0f} | {r['sentences_per_s'] / base:.1f} | {r['p50_ms']:.1f}"
            f" | {r['p99_ms']:.1f} | {r['macro_f1']:.3f} | {f1['claim']:.3f} | {f1['denial']:.3f}"
            f" | {f1['official_statement']:.3f} | {f1['other']:.3f} |"
        )
    result = {
        "cpu": cpu_name(),
        "threads": threads,
        "model": str(model_dir),
        "data": source,
        "sentences": len(examples),
        "context": context,
        "latency_calls": calls,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

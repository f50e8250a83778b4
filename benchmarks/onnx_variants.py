"""Which ONNX graph to ship: the export's steps compared on one model, interleaved and repeated.

    python -m benchmarks.onnx_variants --model models/default [--quick] [--threads 1 --clock cpu]

Builds, in a temporary folder (the model folder is not touched), the traced fp32 graph (what
``claimlens export`` writes), the fused one (``claimlens export --fuse``) and each quantised to
int8: static (the default export, calibrated as ``claimlens export`` does) and dynamic with and
without ``reduce_range``. Every variant labels the same gold sentences (with their contexts) through
``Classifier``; the rounds go through the variants in turn, reversing the order every other
round, so that a neighbour's load falls on all alike. Reports the median speed relative to
the traced static int8 graph (the default export), each variant's labels against torch's, and macro-F1; writes
``benchmarks/results/onnx_variants.json``.

On a CPU shared with other work, ``--threads 1 --clock cpu`` counts the CPU time this process
used rather than the wall clock, which a busy neighbour stretches.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cpu import cpu_name, peak
from benchmarks.offline import sentences
from benchmarks.table import print_table, write_json
from inference.backends import OnnxBackend, default_threads
from inference.evaluate import compute_metrics
from inference.export import (
    ATTENTION,
    Calibration,
    calibration_inputs,
    fuse_transformer,
    quantize_dynamic_int8,
    quantize_static_int8,
    sample_inputs,
    trace_fp32,
)
from inference.inputs import ContextLike
from inference.model import load_tokenizer_and_info
from inference.predict import Classifier

RESULTS = Path("benchmarks/results")
BASELINE = "traced_int8_static"


def build_variants(model_dir: Path, out: Path, data_root: str) -> dict[str, Path]:
    """The graphs to compare, written under ``out``; fused ones only if the model type fuses."""
    clf = Classifier.load(model_dir)
    model, builder = clf.backend.model, clf.inputs  # type: ignore[attr-defined]  # a TorchBackend
    example = sample_inputs(builder)
    calibration = calibration_inputs(builder, Calibration(data_root=data_root).examples()[1])
    paths = {"traced_fp32": out / "traced.onnx", "fused_fp32": out / "fused.onnx"}
    trace_fp32(model, example, paths["traced_fp32"])
    trace_fp32(model, example, out / "for-fusion.onnx", attention=ATTENTION)
    if not fuse_transformer(out / "for-fusion.onnx", paths["fused_fp32"], model.config):
        del paths["fused_fp32"]
    for name in list(paths):
        stem = name.removesuffix("_fp32")
        paths[f"{stem}_int8_static"] = out / f"{stem}.int8-static.onnx"
        quantize_static_int8(paths[name], paths[f"{stem}_int8_static"], calibration)
        for reduce_range, suffix in ((False, ""), (True, "_reduce_range")):
            paths[f"{stem}_int8_dynamic{suffix}"] = out / f"{stem}.int8-dynamic{suffix}.onnx"
            quantize_dynamic_int8(
                paths[name], paths[f"{stem}_int8_dynamic{suffix}"], reduce_range=reduce_range
            )
    return paths


def timed(
    clf: Classifier, texts: list[str], contexts: list[ContextLike], clock: str
) -> tuple[float, list[str]]:
    now = time.process_time if clock == "cpu" else time.perf_counter
    started = now()
    labels = [p.label for p in clf.predict(texts, contexts)]
    return now() - started, labels


def _row(
    name: str, spent: list[float], labels: list[str], reference: list[str], gold: list[str]
) -> dict[str, Any]:
    median = statistics.median(spent)
    return {
        "name": name,
        "seconds": round(median, 3),
        "sentences_per_s": round(len(gold) / median, 1),
        "spread": round((max(spent) - min(spent)) / median, 3),  # (slowest - fastest) / median
        "labels_equal_torch": round(
            sum(a == b for a, b in zip(labels, reference, strict=True)) / len(gold), 4
        ),
        "macro_f1": round(compute_metrics(gold, labels)["macro_f1"], 4),
    }


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant's median speed, labels against torch's and macro-F1 on the same sentences."""
    model_dir = Path(args.model)
    source, examples = sentences(None, args.data_root, 400 if args.quick else args.limit)
    texts, contexts = [e.text for e in examples], [e.context for e in examples]
    gold = [e.label for e in examples]
    reference = [p.label for p in Classifier.load(model_dir, threads=args.threads).predict(texts, contexts)]
    tokenizer, info = load_tokenizer_and_info(model_dir)
    with tempfile.TemporaryDirectory(prefix="onnx-variants-") as tmp:
        paths = build_variants(model_dir, Path(tmp), args.data_root)
        clfs = {n: Classifier(OnnxBackend(p, args.threads), tokenizer, info) for n, p in paths.items()}
        labels = {}
        for name, clf in clfs.items():
            timed(clf, texts[:8], contexts[:8], args.clock)  # warm-up: first calls pick kernels
            labels[name] = timed(clf, texts, contexts, args.clock)[1]
        times: dict[str, list[float]] = {n: [] for n in clfs}
        for round_ in range(args.rounds):
            for name in list(clfs) if round_ % 2 == 0 else list(clfs)[::-1]:
                times[name].append(timed(clfs[name], texts, contexts, args.clock)[0])
    rows = [_row(n, times[n], labels[n], reference, gold) for n in clfs]
    base = next(r["seconds"] for r in rows if r["name"] == BASELINE)
    for r in rows:
        r["speed_vs_baseline"] = round(base / r["seconds"], 3)
    return {
        "cpu": cpu_name(),
        "peak": peak(n_cores=args.threads).as_dict(),
        "threads": args.threads,
        "clock": args.clock,
        "rounds": args.rounds,
        "model": str(model_dir),
        "data": source,
        "sentences": len(texts),
        "baseline": BASELINE,
        "torch_macro_f1": round(compute_metrics(gold, reference)["macro_f1"], 4),
        "variants": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--quick", action="store_true", help="400 sentences")
    parser.add_argument("--limit", type=int, default=1000, help="sentences (default 1000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_variants.json")
    args = parser.parse_args(argv)
    result = compare(args)
    print(
        f"\n{result['cpu']}, {args.threads} threads, {args.clock} clock, median of {args.rounds} rounds;"
        f" {result['sentences']} sentences from {result['data']}; torch macro-F1 {result['torch_macro_f1']:.3f}\n"
    )
    header = ["variant", "sentences/s", f"speed vs {BASELINE}", "spread", "labels = torch", "macro-F1"]
    rows = [
        [
            r["name"],
            f"{r['sentences_per_s']:.0f}",
            f"{r['speed_vs_baseline']:.2f}",
            f"{r['spread']:.2f}",
            f"{r['labels_equal_torch']:.4f}",
            f"{r['macro_f1']:.3f}",
        ]
        for r in result["variants"]
    ]
    print_table(header, rows)
    write_json(result, args.out)


if __name__ == "__main__":
    main()

"""Does a sentence's score depend on its batch mates? torch, ONNX fp32, dynamic and static int8.

    python -m benchmarks.int8_batch_invariance --model models/default [--limit 400] [--static minmax:1000 ...]

Builds, in a temporary folder (the model folder is not touched), the traced fp32 graph, its
dynamic int8 quantisation and one static int8 quantisation per ``--static METHOD:SENTENCES``
(calibrated as ``claimlens export`` does: gold train sentences, else corpus train). Every path
labels the same gold test sentences (with their contexts) twice through ``Classifier``: in its
usual length-sorted batches of 64 (as offline ``predict``), and each sentence alone (a batch of
one, as a quiet server). Reports, per path, macro-F1 and labels equal to fp32 (batched), the
largest score difference and the share of labels that change between alone and batched, and
sentences/s (batched; one pass, so noisy on a loaded machine). Prints a table and writes ``benchmarks/results/int8_batch_invariance.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cpu import cpu_name
from benchmarks.offline import sentences
from benchmarks.table import print_table, write_json
from inference.backends import Backend, OnnxBackend, default_threads
from inference.evaluate import compute_metrics
from inference.export import (
    Calibration,
    calibration_inputs,
    quantize_dynamic_int8,
    quantize_static_int8,
    sample_inputs,
    trace_fp32,
)
from inference.labels import LABELS
from inference.predict import Classifier
from inference.records import Example

RESULTS = Path("benchmarks/results")


def build_graphs(clf: Classifier, out: Path, args: argparse.Namespace) -> tuple[dict[str, Path], str]:
    """fp32, dynamic int8 and the static int8 variants under ``out``; and the calibration file."""
    model = clf.backend.model  # type: ignore[attr-defined]  # a TorchBackend
    paths = {"onnx_fp32": out / "model.onnx", "onnx_int8_dynamic": out / "dynamic.onnx"}
    trace_fp32(model, sample_inputs(clf.inputs), paths["onnx_fp32"])
    quantize_dynamic_int8(paths["onnx_fp32"], paths["onnx_int8_dynamic"])
    source = ""
    for variant in args.static:
        method, n = variant.split(":")
        source, examples = Calibration(data_root=args.data_root, sentences=int(n), method=method).examples()
        name = f"onnx_int8_static_{method}_{n}"
        paths[name] = out / f"{name}.onnx"
        quantize_static_int8(
            paths["onnx_fp32"], paths[name], calibration_inputs(clf.inputs, examples), method
        )
    return paths, source


def scores(clf: Classifier, examples: list[Example]) -> tuple[np.ndarray, list[str], float]:
    """Each sentence's scores (columns in LABELS order), labels, and the seconds it took."""
    started = time.perf_counter()
    predictions = clf.predict([e.text for e in examples], [e.context for e in examples])
    seconds = time.perf_counter() - started
    return (
        np.array([[p.scores[label] for label in LABELS] for p in predictions]),
        [p.label for p in predictions],
        seconds,
    )


def measure(base: Classifier, backend: Backend, examples: list[Example], batch_size: int) -> dict[str, Any]:
    """Alone (batches of one) against ``batch_size`` batches, for one backend."""
    batched = Classifier(backend, base.tokenizer, base.info, batch_size=batch_size)
    alone = Classifier(backend, base.tokenizer, base.info, batch_size=1)
    scores(batched, examples[:8])  # warm-up: first calls allocate and pick kernels
    s_batched, l_batched, seconds = scores(batched, examples)
    s_alone, l_alone, _ = scores(alone, examples)
    return {
        "scores": s_batched,
        "labels": l_batched,
        "macro_f1": round(compute_metrics([e.label for e in examples], l_batched)["macro_f1"], 4),
        "max_abs_diff_alone_vs_batched": float(np.abs(s_alone - s_batched).max()),
        "labels_changed_alone_vs_batched": round(
            float(np.mean([a != b for a, b in zip(l_alone, l_batched, strict=True)])), 4
        ),
        "sentences_per_s": round(len(examples) / seconds, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    data, examples = sentences(None, args.data_root, args.limit)
    base = Classifier.load(args.model, threads=args.threads)
    rows: dict[str, dict[str, Any]] = {"torch": measure(base, base.backend, examples, args.batch_size)}
    with tempfile.TemporaryDirectory(prefix="int8-invariance-") as tmp:
        paths, calibration_data = build_graphs(base, Path(tmp), args)
        for name, path in paths.items():
            print(f"{name}: {len(examples)} sentences, batched and alone ...", flush=True)
            rows[name] = measure(base, OnnxBackend(path, args.threads), examples, args.batch_size)
    fp32_scores, fp32_labels = rows["onnx_fp32"]["scores"], rows["onnx_fp32"]["labels"]
    for row in rows.values():
        labels = row.pop("labels")
        row["labels_equal_fp32"] = round(
            float(np.mean([a == b for a, b in zip(labels, fp32_labels, strict=True)])), 4
        )
        row["max_abs_diff_vs_fp32"] = round(float(np.abs(row.pop("scores") - fp32_scores).max()), 4)
    return {
        "cpu": cpu_name(),
        "threads": args.threads,
        "model": args.model,
        "data": data,
        "sentences": len(examples),
        "batch_size": args.batch_size,
        "calibration_data": calibration_data,
        "note": "sentences/s: one pass each, on a CPU shared with other work (noisy)",
        "paths": [{"name": name, **row} for name, row in rows.items()],
    }


def _static_variant(text: str) -> str:
    method, _, n = text.partition(":")
    Calibration(sentences=int(n) if n.isdigit() else 0, method=method)  # ValueError: argparse says so
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--limit", type=int, help="at most this many test sentences (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="Classifier's batch size (default 64)")
    parser.add_argument(
        "--static",
        nargs="+",
        default=["minmax:1000"],
        type=_static_variant,
        help="static int8 variants as METHOD:SENTENCES (minmax, percentile or entropy;"
        " default minmax:1000, as the export)",
    )
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--out", type=Path, default=RESULTS / "int8_batch_invariance.json")
    args = parser.parse_args(argv)
    result = run(args)
    print(
        f"\n{result['cpu']}, {args.threads} threads; {result['sentences']} sentences from {result['data']};"
        f" static int8 calibrated on {result['calibration_data']}; {result['note']}\n"
    )
    header = [
        "path",
        "macro-F1",
        "labels = fp32",
        "max Δ vs fp32",
        "max Δ alone/batched",
        "labels changed alone/batched",
        "sentences/s",
    ]
    print_table(
        header,
        [
            [
                r["name"],
                f"{r['macro_f1']:.4f}",
                f"{100 * r['labels_equal_fp32']:.1f}%",
                f"{r['max_abs_diff_vs_fp32']:.3f}",
                f"{r['max_abs_diff_alone_vs_batched']:.1e}",
                f"{100 * r['labels_changed_alone_vs_batched']:.2f}%",
                f"{r['sentences_per_s']:.0f}",
            ]
            for r in result["paths"]
        ],
    )
    write_json(result, args.out)


if __name__ == "__main__":
    main()

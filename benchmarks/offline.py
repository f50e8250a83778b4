"""Offline inference speed and accuracy: a `pipeline` baseline against our torch and ONNX paths.

    python -m benchmarks.offline --model models/default [--quick] [--export]

Every path labels the same real sentences (the real-news gold test split, or the corpus test
split when ../shared/datasets is absent) on this machine, in one run. Batch throughput is
sentences per second over all of them; latency is one sentence per call (p50/p99). A model
trained with context gets each sentence's previous sentence on every path. ``--export``
re-exports the ONNX files first (they are exported when missing).

Each path also reports the work it did as a fraction of the CPU's paper peak
(``benchmarks/cpu.py`` says what is counted: the encoder's matmuls on each input's real
tokens, against cores × GHz × operations per cycle of the instruction set). Prints a table
and writes ``benchmarks/results/offline.json``. ``--quick`` uses 400 sentences and 100
latency calls (under two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig

from benchmarks.cpu import Flops, Peak, cpu_name, encoder_flops, peak, peak_fraction
from benchmarks.table import print_table, write_json
from inference.backends import ONNX_FILES, default_threads
from inference.evaluate import compute_metrics
from inference.export import export_onnx
from inference.inputs import Context, InputBuilder
from inference.model import load_tokenizer_and_info, read_info
from inference.predict import Classifier
from inference.readers import load_examples
from inference.records import Example

__all__ = ["cpu_name", "main", "measure", "sentences"]  # cpu_name: benchmarks/serve.py reports it

RESULTS = Path("benchmarks/results")


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
        def pairs(rows: list[Example]) -> list[dict[str, str]]:
            before = [e.context.previous if isinstance(e.context, Context) else e.context for e in rows]
            return [{"text": e.text, "text_pair": b or ""} for e, b in zip(rows, before, strict=True)]

        return lambda rows: [r["label"] for r in pipe(pairs(rows), truncation=True)]
    return lambda rows: [r["label"] for r in pipe([e.text for e in rows])]


def our_path(model_dir: Path, backend: str, quantize: str) -> Run:
    clf = Classifier.load(model_dir, backend=backend, quantize=quantize)
    return lambda rows: [p.label for p in clf.predict([e.text for e in rows], [e.context for e in rows])]


def token_lengths(model_dir: Path, examples: list[Example]) -> list[int]:
    """Each input's real length in tokens, as our paths build it (sentence + trimmed context)."""
    tokenizer, info = load_tokenizer_and_info(model_dir)
    build = InputBuilder(tokenizer, info.max_length, info.context)
    return [len(e.input_ids) for e in build([e.text for e in examples], [e.context for e in examples])]


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
        "seconds": round(seconds, 3),
    }


def add_peak(run: dict[str, Any], flops: Flops, machine: Peak) -> None:
    """The run's useful GFLOP/s and its fraction of the peak (int8 matmuls at the int8 peak)."""
    run["gflops_per_s"] = round(flops.total / run["seconds"] / 1e9, 1)
    run["peak_fraction"] = round(peak_fraction(flops, run["seconds"], machine, run["name"] == "onnx_int8"), 4)


HEADER = [
    "path", "sentences/s", "× pipeline", "p50 ms", "p99 ms", "GFLOP/s", "% peak", "macro-F1",
    "claim", "denial", "official", "other",
]  # fmt: skip


def print_runs(runs: list[dict[str, Any]]) -> None:
    base = runs[0]["sentences_per_s"]
    print_table(HEADER, [_cells(r, base) for r in runs])


def _cells(r: dict[str, Any], base: float) -> list[str]:
    f1 = r["f1"]
    return [
        r["name"],
        f"{r['sentences_per_s']:.0f}",
        f"{r['sentences_per_s'] / base:.1f}",
        f"{r['p50_ms']:.1f}",
        f"{r['p99_ms']:.1f}",
        f"{r['gflops_per_s']:.0f}",
        f"{100 * r['peak_fraction']:.1f}",
        f"{r['macro_f1']:.3f}",
        *(f"{f1[label]:.3f}" for label in ("claim", "denial", "official_statement", "other")),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument(
        "--data", help="labelled JSONL or stand-off gold (default: gold test, else corpus test)"
    )
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--quick", action="store_true", help="400 sentences, 100 latency calls")
    parser.add_argument("--limit", type=int, help="at most this many sentences")
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument(
        "--export", action="store_true", help="re-export model.onnx and model.int8.onnx first"
    )
    parser.add_argument("--ghz", type=float, help="the clock for the peak (default: /proc/cpuinfo's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "offline.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model_dir = Path(args.model)
    limit = 400 if args.quick else args.limit
    calls = 100 if args.quick else args.latency_calls
    source, examples = sentences(args.data, args.data_root, limit)
    threads = default_threads()
    torch.set_num_threads(threads)
    for quantize in ("none", "int8"):
        if args.export or not (model_dir / ONNX_FILES[quantize]).is_file():
            print(f"exporting {model_dir / ONNX_FILES[quantize]}")
            export_onnx(model_dir, quantize)

    context = read_info(model_dir).context
    lengths = token_lengths(model_dir, examples)
    flops = encoder_flops(AutoConfig.from_pretrained(model_dir, local_files_only=True), lengths)
    machine = peak(ghz=args.ghz, n_cores=threads)
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
        add_peak(runs[-1], flops, machine)

    with_context = ", each with its previous sentence" if context else ""
    print(f"\n{cpu_name()}, {threads} threads; {len(examples)} sentences from {source}{with_context}")
    print(
        f"peak: {machine.cores} cores × {machine.ghz} GHz, {machine.vector_bits}-bit vectors:"
        f" fp32 {machine.fp32_gflops:.0f} GFLOP/s, int8 {machine.int8_gops:.0f} GOP/s"
        f" ({machine.vnni or 'no VNNI: VPMADDUBSW'}); {flops.total / len(lengths) / 1e9:.2f} GFLOP per"
        f" sentence at {np.mean(lengths):.1f} tokens on average\n"
    )
    print_runs(runs)
    result = {
        "cpu": cpu_name(),
        "threads": threads,
        "model": str(model_dir),
        "data": source,
        "sentences": len(examples),
        "context": context,
        "latency_calls": calls,
        "mean_tokens": round(float(np.mean(lengths)), 2),
        "gflop_per_sentence": round(flops.total / len(lengths) / 1e9, 4),
        "attention_share": round(flops.attention / flops.total, 4),
        "peak": machine.as_dict(),
        "runs": runs,
    }
    write_json(result, args.out)


if __name__ == "__main__":
    main()

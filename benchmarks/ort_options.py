"""ONNX Runtime session settings for the int8 model: batch throughput of each, on the same sentences.

    python -m benchmarks.ort_options --model models/default [--quick] [--grid axes|full] [--repeats 3]

Every setting labels the same gold sentences (each with its previous sentence, as the context
default reads them) through ``Classifier`` on ``model.int8.onnx``, so input building, batching
and scoring are the ones ``offline.py`` measures; only the session and the batch size change.
A setting is: intra-op threads (1 or 2), ``session.intra_op.allow_spinning`` (1, ORT's default, or 0),
the graph optimisation level (basic, extended, all), the CPU memory arena (on, off), the
``Classifier`` batch size (16, 32, 64) and ``session.dynamic_block_base`` (off, 2, 4); inter-op
threads stay 1 and execution sequential. ``--grid axes`` (the default) changes one thing at a
time from claimlens's own settings (the baseline); ``--grid full`` runs every combination.

The repeats go through the settings in turn, reversing the order every other round, so that a
neighbour's load falls on all alike; each setting reports its median sentences/s, the spread
((slowest - fastest) / median), CPU ms per sentence (which spinning threads inflate), its
labels against the baseline's and macro-F1. Prints a table and writes
``benchmarks/results/ort_options.json``. ``--quick``: 400 sentences, the axes grid.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.cpu import cpu_name
from benchmarks.offline import sentences
from benchmarks.table import print_table, write_json
from inference.backends import OnnxBackend, OrtSettings, default_threads, onnx_path
from inference.evaluate import compute_metrics
from inference.model import ModelInfo, load_tokenizer_and_info
from inference.predict import Classifier
from inference.records import Example

RESULTS = Path("benchmarks/results")
SPINNING = "session.intra_op.allow_spinning"
BLOCK_BASE = "session.dynamic_block_base"  # a session config key since onnxruntime 1.11
AXES: dict[str, tuple[Any, ...]] = {
    "threads": (1, 2),
    "spinning": (True, False),
    "graph": ("basic", "extended", "all"),
    "arena": (True, False),
    "batch_size": (16, 32, 64),
    "block_base": (None, 2, 4),
}


@dataclass(frozen=True)
class Setting:
    """One point of the grid; the defaults are what ``Classifier.load(..., backend="onnx")`` uses."""

    threads: int = default_threads()
    spinning: bool = True
    graph: str = "all"
    arena: bool = True
    batch_size: int = 64
    block_base: int | None = None

    def ort(self) -> OrtSettings:
        config = [] if self.spinning else [(SPINNING, "0")]  # "1" is ORT's default: left unset
        if self.block_base is not None:
            config.append((BLOCK_BASE, str(self.block_base)))
        return OrtSettings(graph=self.graph, cpu_mem_arena=self.arena, config=tuple(config))

    def name(self) -> str:
        """``baseline``, or what differs from it, e.g. ``graph=basic, batch_size=32``."""
        changed = [f"{k}={v}" for k, v in asdict(self).items() if v != getattr(BASELINE, k)]
        return ", ".join(changed) or "baseline"


BASELINE = Setting()


def block_base_supported() -> bool:
    """Whether this onnxruntime reads ``session.dynamic_block_base`` (it ignores unknown keys)."""
    import onnxruntime as ort

    major, minor = (int(x) for x in ort.__version__.split(".")[:2])
    return (major, minor) >= (1, 11)


def grid(kind: str) -> list[Setting]:
    """The baseline first, then one axis changed at a time (``axes``) or every combination (``full``)."""
    axes = dict(AXES)
    if not block_base_supported():
        axes["block_base"] = (None,)
    if kind == "full":
        every = [
            Setting(**dict(zip(axes, values, strict=True))) for values in itertools.product(*axes.values())
        ]
        return [BASELINE, *(s for s in every if s != BASELINE)]
    changed = [replace(BASELINE, **{k: v}) for k, values in axes.items() for v in values]
    return [BASELINE, *dict.fromkeys(s for s in changed if s != BASELINE)]


def classifier(model_dir: Path, tokenizer: Any, info: ModelInfo, setting: Setting) -> Classifier:
    """The int8 model as ``Classifier.load`` builds it, with this setting's session and batch size."""
    backend = OnnxBackend(onnx_path(model_dir, "int8"), setting.threads, setting.ort())
    return Classifier(backend, tokenizer, info, batch_size=setting.batch_size)


def timed_run(clf: Classifier, examples: list[Example]) -> tuple[float, float, list[str]]:
    """Wall seconds, CPU seconds (all threads) and labels of one ``predict`` over ``examples``."""
    texts, contexts = [e.text for e in examples], [e.context for e in examples]
    clf.predict(texts[:8], contexts[:8])  # warm-up: the first calls allocate and pick kernels
    wall, cpu = time.perf_counter(), time.process_time()
    labels = [p.label for p in clf.predict(texts, contexts)]
    return time.perf_counter() - wall, time.process_time() - cpu, labels


def measure(model_dir: Path, settings: list[Setting], examples: list[Example], repeats: int) -> list[dict]:
    """Each setting's ``repeats`` runs, interleaved; a fresh session per run keeps memory flat."""
    tokenizer, info = load_tokenizer_and_info(model_dir)
    runs: dict[Setting, list[tuple[float, float]]] = {s: [] for s in settings}
    labels: dict[Setting, list[str]] = {}
    for round_ in range(repeats):
        for setting in settings if round_ % 2 == 0 else settings[::-1]:
            wall, cpu, labels[setting] = timed_run(classifier(model_dir, tokenizer, info, setting), examples)
            runs[setting].append((wall, cpu))
            print(f"  {setting.name()}: {len(examples) / wall:.0f} sentences/s", flush=True)
    gold = [e.label for e in examples]
    return [_row(s, runs[s], labels[s], labels[BASELINE], gold) for s in settings]


def _row(
    setting: Setting, runs: list[tuple[float, float]], labels: list[str], baseline: list[str], gold: list[str]
) -> dict[str, Any]:
    walls = [w for w, _ in runs]
    median = statistics.median(walls)
    return {
        "name": setting.name(),
        "settings": asdict(setting),
        "sentences_per_s": round(len(gold) / median, 1),
        "runs_sentences_per_s": [round(len(gold) / w, 1) for w in walls],
        "spread": round((max(walls) - min(walls)) / median, 3),
        "cpu_ms_per_sentence": round(1000 * statistics.median(c for _, c in runs) / len(gold), 3),
        "labels_equal_baseline": round(
            sum(a == b for a, b in zip(labels, baseline, strict=True)) / len(gold), 4
        ),
        "macro_f1": round(compute_metrics(gold, labels)["macro_f1"], 4),
    }


HEADER = [
    "setting", "threads", "spinning", "graph", "arena", "batch", "block base", "sentences/s",
    "vs baseline", "spread", "CPU ms/sentence", "labels = baseline", "macro-F1",
]  # fmt: skip


def _cells(r: dict[str, Any], base: float) -> list[str]:
    s = r["settings"]
    return [
        r["name"],
        str(s["threads"]),
        "1" if s["spinning"] else "0",
        s["graph"],
        "on" if s["arena"] else "off",
        str(s["batch_size"]),
        "off" if s["block_base"] is None else str(s["block_base"]),
        f"{r['sentences_per_s']:.0f}",
        f"{r['sentences_per_s'] / base:.3f}",
        f"{r['spread']:.2f}",
        f"{r['cpu_ms_per_sentence']:.2f}",
        f"{r['labels_equal_baseline']:.4f}",
        f"{r['macro_f1']:.3f}",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="models/default", help="a folder with model.int8.onnx")
    parser.add_argument(
        "--data", help="labelled JSONL or stand-off gold (default: gold test, else corpus test)"
    )
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--quick", action="store_true", help="400 sentences, the axes grid")
    parser.add_argument("--limit", type=int, help="at most this many sentences (default: all)")
    parser.add_argument("--grid", choices=["axes", "full"], default="axes")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS / "ort_options.json")
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--repeats and --limit must be at least 1")
    if args.quick:
        args.limit, args.grid = 400, "axes"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model_dir = Path(args.model)
    onnx_path(model_dir, "int8")  # a missing export is a clear error before any work
    source, examples = sentences(args.data, args.data_root, args.limit)
    settings = grid(args.grid)
    load_before = os.getloadavg()[0]
    print(f"{len(settings)} settings x {args.repeats} runs on {len(examples)} sentences ...", flush=True)
    rows = measure(model_dir, settings, examples, args.repeats)
    context = load_tokenizer_and_info(model_dir)[1].context
    print(
        f"\n{cpu_name()}, {default_threads()} cores; {model_dir}/model.int8.onnx; {len(examples)} sentences"
        f" from {source}{', each with its previous sentence' if context else ''}; median of {args.repeats}"
        f" interleaved runs; 1-minute load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print_table(HEADER, [_cells(r, rows[0]["sentences_per_s"]) for r in rows])
    result = {
        "cpu": cpu_name(),
        "cores": default_threads(),
        "model": str(model_dir / "model.int8.onnx"),
        "data": source,
        "sentences": len(examples),
        "context": context,
        "grid": args.grid,
        "repeats": args.repeats,
        "fixed": {"inter_op_num_threads": 1, "execution_mode": "sequential"},
        "dynamic_block_base_supported": block_base_supported(),
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "runs": rows,
    }
    write_json(result, args.out)


if __name__ == "__main__":
    main()

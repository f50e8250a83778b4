"""What an explanation costs: ms per sentence with and without ``explain``, on the same model.

    python -m benchmarks.explain --model models/default [--input examples/article.txt] [--limit 16] [--steps 20 50]

The sentences of an article (each with its previous sentence as context, as ``analyze`` gives
them) are labelled on the torch backend: all in one ``predict`` call, one sentence per call, one sentence
per ``predict(explain=True)`` call (the default 20 steps), and, for each number of integration
steps, one sentence per explanation alone (no prediction). Explanations
also report how well their word scores add up (``delta``, see ``inference/explain.py``): the mean
of ``|delta|`` and of ``|delta| / |score - baseline_score|``. Prints a table and writes
``benchmarks/results/explain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.cpu import cpu_name
from inference.backends import TorchBackend, default_threads
from inference.explain import STEPS, Explainer
from inference.inputs import previous_sentences
from inference.predict import Classifier, split_article

RESULTS = Path("benchmarks/results")


def _ms_per_sentence(run: Any, n: int, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return round(1000 * best / n, 2)


def _explained(clf: Classifier, texts: list[str], contexts: list[str | None], steps: int) -> dict[str, Any]:
    assert isinstance(clf.backend, TorchBackend)  # the same PyTorch weights predict runs
    explainer = Explainer(clf.backend.model, clf.tokenizer, clf.info, clf.temperature, steps=steps)
    labels = [p.label for p in clf.predict(texts, contexts)]
    explainer.explain(texts[:1], contexts[:1], labels[:1])  # warm-up
    started = time.perf_counter()
    found = [explainer.explain([t], [c], [y])[0] for t, c, y in zip(texts, contexts, labels, strict=True)]
    seconds = time.perf_counter() - started
    relative = [abs(e.delta) / max(abs(e.score - e.baseline_score), 1e-6) for e in found]
    return {
        "steps": steps,
        "ms_per_sentence": round(1000 * seconds / len(texts), 1),
        "mean_abs_delta": round(statistics.mean(abs(e.delta) for e in found), 4),
        "mean_relative_delta": round(statistics.mean(relative), 4),
    }


def measure(model: str, article: str, limit: int, steps: list[int], threads: int) -> dict[str, Any]:
    """Time predict and explain on the first ``limit`` sentences of ``article``."""
    torch.set_num_threads(threads)
    clf = Classifier.load(model, threads=threads)
    sentences = [s.text for s in split_article(article)][:limit]
    contexts = previous_sentences(sentences)
    clf.predict(sentences, contexts)  # warm-up
    n = len(sentences)
    predict_batch = _ms_per_sentence(lambda: clf.predict(sentences, contexts), n, repeat=3)
    predict_one = _ms_per_sentence(
        lambda: [clf.predict([s], [c]) for s, c in zip(sentences, contexts, strict=True)], n, repeat=3
    )
    clf.predict(sentences[:1], contexts[:1], explain=True)  # warm-up: builds the explainer
    predict_explain_one = _ms_per_sentence(
        lambda: [clf.predict([s], [c], explain=True) for s, c in zip(sentences, contexts, strict=True)], n
    )
    explained = [_explained(clf, sentences, contexts, k) for k in steps]
    for row in explained:
        row["times_one_sentence_predict"] = round(row["ms_per_sentence"] / predict_one, 1)
    return {
        "model": model,
        "sentences": n,
        "threads": threads,
        "cpu": cpu_name(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "predict_batch_ms_per_sentence": predict_batch,
        "predict_one_ms_per_sentence": predict_one,
        "predict_explain_one_ms_per_sentence": predict_explain_one,
        "explain": explained,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| path | ms / sentence | × one-sentence predict | mean abs delta | mean rel. delta |",
        "|---|---|---|---|---|",
        f"| predict, all {result['sentences']} in one call | {result['predict_batch_ms_per_sentence']} | | | |",
        f"| predict, one sentence per call | {result['predict_one_ms_per_sentence']} | 1 | | |",
        f"| predict(explain=True), one per call ({STEPS} steps) | {result['predict_explain_one_ms_per_sentence']} "
        f"| {round(result['predict_explain_one_ms_per_sentence'] / result['predict_one_ms_per_sentence'], 1)} | | |",
    ]
    for row in result["explain"]:
        lines.append(
            f"| explain, {row['steps']} steps | {row['ms_per_sentence']} | {row['times_one_sentence_predict']} "
            f"| {row['mean_abs_delta']} | {row['mean_relative_delta']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--input", default="examples/article.txt", help="an article to split into sentences")
    parser.add_argument("--limit", type=int, default=16, help="sentences to time (default 16)")
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50], help="integration steps to time")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--output", default=str(RESULTS / "explain.json"))
    args = parser.parse_args(argv)
    result = measure(
        args.model, Path(args.input).read_text(encoding="utf-8"), args.limit, args.steps, args.threads
    )
    print(table(result))
    print(f"({result['threads']} threads, {result['cpu']}, load average {result['load_average_1min']})")
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a context window costs: how often it does not fit (per window and max_length, the share of
inputs whose context is trimmed, on the gold train split: tokenization only), and with ``--speed``
how fast a model reads it (sentences/s on gold test sentences, one window per experiment config).

python -m benchmarks.context_budget   # prints a Markdown table, writes benchmarks/results/context_budget.json
python -m benchmarks.context_budget --speed models/default --sentences 400   # and context_speed.json

An input's context is trimmed when its sentence and the window's whole context (the previous
sentence(s), and the next one for ``after=1``) need more tokens than ``max_length`` leaves; it is
cut by more than half when fewer than half of its context tokens are kept. The counts come from
the same ``InputBuilder`` training and serving use, so they are what a model would read. The speed
runs one model's weights under each config's window and max_length (the weights do not change the
cost), so it needs no trained window model.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean
from typing import Any

from transformers import AutoTokenizer

from benchmarks.table import print_table, write_json
from inference.inputs import InputBuilder, Window
from inference.predict import Classifier
from inference.readers import load_examples
from training.config import load_config
from training.modeling import resolve_base

WINDOWS = (Window(1, 0), Window(1, 1), Window(2, 0), Window(2, 1), Window(3, 1))
LENGTHS = (128, 160, 192)
UNLIMITED = 1_000_000  # a max_length nothing reaches: every input whole
SPEED_CONFIGS = (
    "configs/default.yaml",
    "configs/experiments/default_prev2.yaml",
    "configs/experiments/default_prev2_next.yaml",
)


def lengths(tokenizer: Any, examples: list[Any], window: Window) -> tuple[list[int], list[int], int]:
    """Each input's sentence tokens and whole-context tokens, and the window's special tokens."""
    texts, contexts = [e.text for e in examples], [e.context for e in examples]
    whole = InputBuilder(tokenizer, UNLIMITED, context=True, window=window)
    alone = InputBuilder(tokenizer, UNLIMITED, context=False)
    specials = UNLIMITED - whole.budget
    sentence = [len(e.input_ids) - (UNLIMITED - alone.budget) for e in alone(texts)]
    context = [len(e.input_ids) - specials - s for e, s in zip(whole(texts, contexts), sentence, strict=True)]
    return sentence, context, specials


def budget_row(sentence: list[int], context: list[int], specials: int, max_length: int) -> dict[str, float]:
    """Shares (percent of all inputs) trimmed, cut by more than half, and with the sentence itself cut."""
    room = max_length - specials
    kept = [max(0, min(c, room - s)) for s, c in zip(sentence, context, strict=True)]
    n = len(sentence)
    return {
        "context_trimmed_pct": 100 * sum(k < c for k, c in zip(kept, context, strict=True)) / n,
        "context_cut_over_half_pct": 100 * sum(2 * k < c for k, c in zip(kept, context, strict=True)) / n,
        "sentence_truncated_pct": 100 * sum(s > room for s in sentence) / n,
        "mean_tokens": mean(
            min(max_length, specials + s + c) for s, c in zip(sentence, context, strict=True)
        ),
    }


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Sentences/s of ``args.speed``'s weights under each of ``SPEED_CONFIGS``' windows: the best
    of ``repeats`` rounds, each round timing every window once (so that drifting load hits all)."""
    base = Classifier.load(args.speed, backend=args.backend, quantize=args.quantize, threads=args.threads)
    examples = load_examples(args.test_data, args.data_root)[: args.sentences]
    texts, contexts = [e.text for e in examples], [e.context for e in examples]
    runs = {}
    for path in SPEED_CONFIGS:
        model = load_config(path).model
        window = {"context_before": model.context_before, "context_after": model.context_after}
        runs[path] = Classifier(
            base.backend, base.tokenizer, replace(base.info, max_length=model.max_length, **window)
        )
        runs[path].predict(texts[:16], contexts[:16])  # warm-up: first calls allocate and pick kernels
    seconds: dict[str, list[float]] = {path: [] for path in runs}
    for _ in range(args.repeats):
        for path, clf in runs.items():
            started = time.perf_counter()
            clf.predict(texts, contexts)
            seconds[path].append(time.perf_counter() - started)
    found, rows = [], []
    for path, clf in runs.items():
        rate, tokens = (
            len(texts) / min(seconds[path]),
            mean(len(e.input_ids) for e in clf.inputs(texts, contexts)),
        )
        found.append(
            {
                "config": path,
                "window": [clf.info.context_before, clf.info.context_after],
                "max_length": clf.info.max_length,
                "sentences_per_s": rate,
                "mean_tokens": tokens,
                "seconds": seconds[path],
            }
        )
        window_text = f"{clf.info.context_before} before, {clf.info.context_after} after"
        ratio = rate / found[0]["sentences_per_s"]
        rows.append([path, window_text, clf.info.max_length, f"{tokens:.0f}", f"{rate:.0f}", f"{ratio:.2f}"])
    print(f"\n{args.speed} ({base.backend.name}), {len(texts)} sentences of {args.test_data}\n")
    print_table(["config", "window", "max_length", "mean tokens", "sentences/s", "vs default"], rows)
    return {"model": str(args.speed), "backend": base.backend.name, "sentences": len(texts), "runs": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/gold/train.jsonl")
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--base", default="minilm", help="whose tokenizer counts the tokens")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/context_budget.json"))
    parser.add_argument("--speed", type=Path, help="also time this model folder under each window")
    parser.add_argument("--test-data", default="data/gold/test.jsonl")
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--quantize", default="none", choices=["none", "int8"])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-budget", action="store_true", help="only the speed")
    args = parser.parse_args()
    if args.speed:
        write_json(speed(args), args.out.with_name(f"context_speed_{args.backend}_{args.quantize}.json"))
    if not args.skip_budget:
        write_json(budget(args), args.out)


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """The budget table of every window in ``WINDOWS`` at every length in ``LENGTHS``."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_base(args.base), local_files_only=True)
    examples = load_examples(args.data, args.data_root)
    rows, result = [], {"data": args.data, "sentences": len(examples), "base": args.base, "windows": []}
    for window in WINDOWS:
        sentence, context, specials = lengths(tokenizer, examples, window)
        found: dict[str, Any] = {"before": window.before, "after": window.after}
        found["mean_context_tokens"] = mean(context)
        for max_length in LENGTHS:
            row = budget_row(sentence, context, specials, max_length)
            found[str(max_length)] = row
            rows.append(
                [
                    f"{window.before} before" + (f" + {window.after} after" if window.after else ""),
                    max_length,
                    f"{row['context_trimmed_pct']:.1f}%",
                    f"{row['context_cut_over_half_pct']:.1f}%",
                    f"{row['sentence_truncated_pct']:.2f}%",
                    f"{row['mean_tokens']:.0f}",
                ]
            )
        result["windows"].append(found)
    print(f"{args.data}: {len(examples)} sentences, {args.base} tokens\n")
    header = ["window", "max_length", "context trimmed", "cut by over half", "sentence cut", "mean tokens"]
    print_table(header, rows)
    return result


if __name__ == "__main__":
    main()

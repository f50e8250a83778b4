"""Loading the configured splits and turning them into tokenized ``datasets``."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from inference.inputs import InputBuilder
from inference.labels import LABEL2ID, label_counts
from inference.records import Example, read_labelled
from inference.standoff import read_standoff
from training.config import DataConfig, DataSource
from training.weak import read_weak


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    dev: list[Example]
    test: list[Example]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: label_counts(e.label for e in getattr(self, name)) for name in self.sizes()}


def load_source(source: DataSource, root: Path) -> list[Example]:
    if source.kind == "standoff":
        examples = read_standoff(source.path, root)
    elif source.kind == "weak":
        examples = read_weak(source.path, root)
    else:
        examples = read_labelled(source.path)
    if source.sample:
        docs = sorted({e.doc for e in examples})
        keep = set(random.Random(0).sample(docs, min(source.sample, len(docs))))
        examples = [e for e in examples if e.doc in keep]
    return examples[: source.limit] if source.limit else examples


def load_split(
    sources: Sequence[DataSource], root: Path, held_out: frozenset[str] = frozenset()
) -> list[Example]:
    """Every source of one split.

    Weak labels never speak for a document that has real labels in this split
    or that is held out (``held_out``: the dev/test documents).
    """
    loaded = {i: load_source(s, root) for i, s in enumerate(sources) if s.kind != "weak"}
    labelled = held_out | {e.doc for part in loaded.values() for e in part}
    examples: list[Example] = []
    for i, source in enumerate(sources):  # config order, so that shuffling stays reproducible
        if source.kind == "weak":
            examples += [e for e in load_source(source, root) if e.doc not in labelled]
        else:
            examples += loaded[i]
    counts = Counter((e.doc, e.idx) for e in examples)
    dupes = sorted(k for k, n in counts.items() if n > 1)
    if dupes:
        raise ValueError(f"the same sentence comes from two sources: {dupes[:3]}")
    return examples


def load_splits(config: DataConfig) -> Splits:
    """Read every source of every split; fail before training on anything unusable."""
    root = Path(config.root)
    dev = load_split(config.dev, root)
    test = load_split(config.test, root)
    held_out = frozenset(e.doc for e in dev + test)
    splits = Splits(train=load_split(config.train, root, held_out), dev=dev, test=test)
    if not splits.dev:
        raise ValueError("the dev split is empty")
    # Train must teach every label, and dev must test every label: the best epoch is chosen
    # by macro-F1 over all four. An empty test split is allowed (no test then).
    for name, sources in (("train", config.train), ("dev", config.dev), ("test", config.test)):
        examples = getattr(splits, name)
        missing = [label for label, n in label_counts(e.label for e in examples).items() if n == 0]
        if examples and missing:
            files = ", ".join(str(s.path) for s in sources)
            raise ValueError(f"the {name} split ({files}) has no examples of {', '.join(missing)}")
    overlap = {e.doc for e in splits.train} & {e.doc for e in splits.dev + splits.test}
    if overlap:
        raise ValueError(f"documents in both train and dev/test: {sorted(overlap)[:3]}")
    return splits


def encode(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    context: bool,
) -> Dataset:
    """Tokenize examples with the serving path's own input builder (context as the second segment)."""
    build = InputBuilder(tokenizer, max_length, context)
    encoded = build([e.text for e in examples], [e.context for e in examples])
    columns = {
        "input_ids": [e.input_ids for e in encoded],
        "attention_mask": [[1] * len(e.input_ids) for e in encoded],
        "labels": [LABEL2ID[e.label] for e in examples],
    }
    if "token_type_ids" in tokenizer.model_input_names:  # BERT has segment ids; MPNet has none
        columns["token_type_ids"] = [e.token_type_ids for e in encoded]
    return Dataset.from_dict(columns)

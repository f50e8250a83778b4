"""Loading the configured splits and turning them into tokenized ``datasets``."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from inference.inputs import PREVIOUS, ContextLike, InputBuilder, Window
from inference.labels import LABEL2ID, LABELS, label_counts
from inference.records import Example, read_labelled
from inference.standoff import read_standoff
from training.config import DataConfig, DataSource, DistillConfig
from training.distill import NO_LABEL, NO_SOFT, SOFT
from training.pool import read_pool, with_text
from training.soft_labels import read_meta
from training.weak import read_weak


@dataclass(frozen=True)
class SoftExample:
    """A pool sentence with its teacher's probabilities (``LABELS`` order); ``doc`` as in ``Example``."""

    doc: str
    idx: int
    text: str
    context: str | None  # the previous sentence (training/pool.py)
    probs: tuple[float, ...]


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    soft: tuple[SoftExample, ...] = ()  # teacher targets for training (distillation only)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: label_counts(e.label for e in getattr(self, name)) for name in self.sizes()}

    def soft_sizes(self) -> dict[str, int]:
        """Teacher-labelled sentences, and how many of them have no gold label."""
        gold = {(e.doc, e.idx) for e in self.train}
        return {"soft": len(self.soft), "soft_only": sum((s.doc, s.idx) not in gold for s in self.soft)}


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


def _probs(row: dict[str, object], where: str) -> tuple[float, ...]:
    probs = row.get("probs")
    if not isinstance(probs, dict) or set(probs) != set(LABELS):
        raise ValueError(f"{where}: probs must map each of {', '.join(LABELS)} to a probability")
    values = tuple(float(probs[label]) for label in LABELS)
    if not all(math.isfinite(v) and v >= 0 for v in values) or abs(sum(values) - 1) > 1e-3:
        raise ValueError(f"{where}: probs {probs} are not a probability distribution")
    return values


def load_soft(distill: DistillConfig, root: Path, held_out: frozenset[str]) -> tuple[SoftExample, ...]:
    """The teacher's soft labels of a distillation config, each with its sentence and context.

    None at all without ``soft_labels``; ``ValueError`` for a missing, partial or malformed file,
    or a sentence of a dev/test document.

    >>> load_soft(DistillConfig(soft_labels="data/pool/teacher_probs.jsonl"), root, frozenset())  # doctest: +SKIP
    """
    if not distill.soft_labels:
        return ()
    path = Path(distill.soft_labels)
    if not path.is_file():
        raise ValueError(f"distill.soft_labels: {path} does not exist (python -m training.soft_labels)")
    meta = read_meta(path)
    rows = read_pool(path)
    if meta.get("rows") != len(rows):
        raise ValueError(
            f"{path} is partial ({len(rows)} of {meta.get('rows')} rows): finish it with --resume"
        )
    probs = [_probs(row, f"{path}:{n}") for n, row in enumerate(rows, start=1)]
    sentences = with_text(rows, root)
    leaked = sorted({s.key[0] for s in sentences} & held_out)
    if leaked:
        raise ValueError(f"{path}: soft labels for dev/test documents {leaked[:3]}")
    return tuple(
        SoftExample(s.key[0], s.idx, s.text, s.context, p) for s, p in zip(sentences, probs, strict=True)
    )


def load_splits(config: DataConfig, distill: DistillConfig | None = None) -> Splits:
    """Read every source of every split (and a distillation's soft labels); fail before training on
    anything unusable."""
    root = Path(config.root)
    dev = load_split(config.dev, root)
    test = load_split(config.test, root)
    held_out = frozenset(e.doc for e in dev + test)
    soft = load_soft(distill, root, held_out) if distill else ()
    splits = Splits(train=load_split(config.train, root, held_out), dev=dev, test=test, soft=soft)
    _check_both_targets(splits)
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


def _check_both_targets(splits: Splits) -> None:
    """A gold train sentence and its pool row must be one sentence (same document, place and text)."""
    gold = {(e.doc, e.idx): e.text for e in splits.train}
    stale = [s for s in splits.soft if gold.get((s.doc, s.idx), s.text) != s.text]
    if stale:
        where = ", ".join(f"{s.doc} #{s.idx}" for s in stale[:3])
        raise ValueError(
            f"{len(stale)} soft-labelled sentences differ from the gold ones ({where}): rebuild the pool"
        )


def _with_soft(
    examples: Sequence[Example], soft: Sequence[SoftExample]
) -> tuple[list[str], list[ContextLike], list[int], list[list[float]]]:
    """Texts, contexts, gold label ids and teacher targets: the examples (with their teacher's
    targets where the pool has them), then the pool sentences that have no gold label."""
    targets = {(s.doc, s.idx): s for s in soft}
    texts, labels, probs = [], [], []
    contexts: list[ContextLike] = []
    for e in examples:
        teacher = targets.pop((e.doc, e.idx), None)
        texts.append(e.text)
        contexts.append(e.context)
        labels.append(LABEL2ID[e.label])
        probs.append(list(teacher.probs) if teacher else [NO_SOFT] * len(LABELS))
    for s in targets.values():
        texts.append(s.text)
        contexts.append(s.context)
        labels.append(NO_LABEL)
        probs.append(list(s.probs))
    return texts, contexts, labels, probs


def encode(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    context: bool,
    soft: Sequence[SoftExample] | None = None,
    window: Window = PREVIOUS,
) -> Dataset:
    """Tokenize examples with the serving path's own input builder (context as the second segment,
    as much of it as ``window`` says: the examples carry their documents' neighbours).

    With ``soft`` (distillation) the dataset also holds the pool sentences without a gold label
    (label ``NO_LABEL``) and a ``SOFT`` column of teacher probabilities (``NO_SOFT`` where none).
    """
    if soft is None:
        texts, contexts = [e.text for e in examples], [e.context for e in examples]
        labels, probs = [LABEL2ID[e.label] for e in examples], None
    else:
        if soft and window != PREVIOUS:
            # A pool row carries only its previous sentence (training/pool.py): refuse, not skew.
            raise ValueError(
                f"distillation reads each pool sentence with its previous sentence only; the context "
                f"window {window} needs the pool's wider context: train it without distill.soft_labels"
            )
        texts, contexts, labels, probs = _with_soft(examples, soft)
    build = InputBuilder(tokenizer, max_length, context, window)
    encoded = build(texts, contexts)
    columns = {
        "input_ids": [e.input_ids for e in encoded],
        "attention_mask": [[1] * len(e.input_ids) for e in encoded],
        "labels": labels,
    }
    if "token_type_ids" in tokenizer.model_input_names:  # BERT has segment ids; MPNet has none
        columns["token_type_ids"] = [e.token_type_ids for e in encoded]
    if probs is not None:
        columns[SOFT] = probs
    return Dataset.from_dict(columns)

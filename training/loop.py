"""The training loop: fine-tune, evaluate on dev each epoch, keep the best, test, save, track."""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from inference.evaluate import compute_metrics, flat_metrics
from inference.labels import LABELS
from inference.model import ModelInfo
from inference.predict import Classifier
from inference.records import Example
from training.config import Config
from training.data import Splits, encode, load_splits
from training.modeling import build_model
from training.report import write_reports
from training.save import save_model_dir
from training.tracking import Tracker


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    run_id: str | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class LengthGroupedBatches:
    """Shuffled batches of similar length: less padding, so faster steps on a CPU.

    Each epoch shuffles all examples, cuts them into pools of 50 batches, sorts each
    pool by length, batches it, and shuffles the batch order.
    """

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        pool = 50 * self.batch_size
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def class_weights(examples: list[Example], mode: str) -> torch.Tensor | None:
    """Inverse-frequency weights (``balanced``) or their square root (``sqrt``), mean 1."""
    if mode == "none":
        return None
    counts = Counter(e.label for e in examples)
    weights = torch.tensor([len(examples) / (len(LABELS) * counts[label]) for label in LABELS])
    if mode == "sqrt":
        weights = weights.sqrt()
    return weights / weights.mean()


def evaluate(classifier: Classifier, examples: list[Example]) -> dict[str, Any]:
    predictions = classifier.predict([e.text for e in examples], [e.context for e in examples])
    return compute_metrics([e.label for e in examples], [p.label for p in predictions])


def _optimizer(model: PreTrainedModel, config: Config) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.optim.lr)


def fit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: Splits,
    config: Config,
    info: ModelInfo,
    tracker: Tracker,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train for the configured epochs; leave the best-dev weights in ``model``."""
    train_ds = encode(splits.train, tokenizer, config.model.max_length, config.model.context)
    generator = torch.Generator().manual_seed(config.seed)
    lengths = [len(ids) for ids in train_ds["input_ids"]]
    loader = DataLoader(
        train_ds,
        batch_sampler=LengthGroupedBatches(lengths, config.train.batch_size, generator),
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
    steps = config.train.epochs * len(loader)
    optimizer = _optimizer(model, config)
    scheduler = get_scheduler(
        config.optim.scheduler,
        optimizer,
        num_warmup_steps=math.ceil(config.optim.warmup_ratio * steps),
        num_training_steps=steps,
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(splits.train, config.train.class_weighting))
    classifier = Classifier(model, tokenizer, info, batch_size=config.train.eval_batch_size)
    best: dict[str, Any] = {"macro_f1": -1.0}
    best_state: dict[str, torch.Tensor] = {}
    history = []
    for epoch in range(1, config.train.epochs + 1):
        model.train()
        total, started = 0.0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.train.epochs}", unit="batch", leave=False)
        for batch in bar:
            labels = batch.pop("labels")
            loss = loss_fn(model(**batch).logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        dev = evaluate(classifier, splits.dev)
        row = {"epoch": epoch, "train_loss": total / len(loader), "seconds": time.perf_counter() - started}
        history.append(row | {"dev": dev})
        tracker.log_metrics({"train_loss": row["train_loss"], **flat_metrics(dev, "dev")}, step=epoch)
        tqdm.write(
            f"epoch {epoch}: train loss {row['train_loss']:.4f}, dev macro-F1 {dev['macro_f1']:.4f}"
            f" ({row['seconds']:.0f}s)"
        )
        if dev["macro_f1"] > best["macro_f1"]:
            best = dev | {"epoch": epoch}
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return best, history


def train(config: Config, tracker: Tracker) -> TrainResult:
    """Run one training from a validated config; return where the model went and its metrics."""
    seed_everything(config.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    splits = load_splits(config.data)
    tracker.log_params(_flatten(config.model_dump(mode="json")))
    tracker.log_params({f"data_size_{k}": v for k, v in splits.sizes().items()})
    tracker.log_text(json.dumps(splits.counts(), indent=2), "data/label_counts.json")
    tracker.log_text(config.to_yaml(), "train_config.yaml")

    model, tokenizer = build_model(
        config.model.base, config.model.max_length, config.model.dropout, (e.text for e in splits.train)
    )
    info = ModelInfo(
        name=config.name,
        path="",
        base_model=config.model.base,
        context=config.model.context,
        max_length=config.model.max_length,
    )
    started = time.perf_counter()
    best_dev, history = fit(model, tokenizer, splits, config, info, tracker)
    classifier = Classifier(model, tokenizer, info, batch_size=config.train.eval_batch_size)
    test = evaluate(classifier, splits.test) if splits.test else None
    metrics = {
        "best_epoch": best_dev["epoch"],
        "dev": {k: v for k, v in best_dev.items() if k != "epoch"},
        "test": test,
        "history": [
            {k: v for k, v in h.items() if k != "dev"} | {"dev_macro_f1": h["dev"]["macro_f1"]}
            for h in history
        ],
        "train_seconds": round(time.perf_counter() - started, 1),
        "data": {"sizes": splits.sizes(), "label_counts": splits.counts()},
    }
    if test:
        tracker.log_metrics(flat_metrics(test, "test"))
    tracker.log_metrics({"best_epoch": best_dev["epoch"], "train_seconds": metrics["train_seconds"]})
    model_dir = save_model_dir(model, tokenizer, config, metrics, Path(config.output_dir) / config.name)
    write_reports(metrics, tracker)
    tracker.log_model(model_dir, [e.text for e in (splits.test or splits.dev)[:3]])
    return TrainResult(model_dir=model_dir, metrics=metrics, run_id=tracker.run_id)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat

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
from training.calibration import calibrate
from training.checkpoint import (
    Checkpoint,
    Live,
    Progress,
    checkpoint_root,
    discard_stale,
    remove_checkpoints,
    restore,
    save_checkpoint,
)
from training.config import Config, flatten
from training.data import Splits, encode, load_splits
from training.distill import SOFT, StudentLoss
from training.distributed import (
    SINGLE,
    Dist,
    ShardedBatches,
    ShardRecord,
    cpu_model,
    mean_over_ranks,
    seed_epoch,
    wrap,
)
from training.modeling import build_model
from training.multitask import attach_aux_head, aux_loss, detach_aux_head, forward_with_aux
from training.report import write_reports
from training.save import model_info, save_model_dir
from training.soft_labels import teacher_params
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


class _Forward(torch.nn.Module):
    """The training forward pass as one module: DDP syncs the gradients of what its forward uses."""

    def __init__(self, model: PreTrainedModel, aux: bool) -> None:
        super().__init__()
        self.model = model
        self.aux = aux

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.aux:
            return forward_with_aux(self.model, batch)
        return self.model(**batch).logits, None


def _run_epoch(
    live: Live,
    net: torch.nn.Module,
    loader: DataLoader,
    loss_fn: StudentLoss,
    config: Config,
    desc: str,
    dist: Dist,
) -> float:
    """One pass over (this rank's shard of) the training data; the mean batch loss."""
    live.model.train()
    total = 0.0
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not dist.is_main)
    for batch in bar:
        batch = {k: v.to(dist.device) for k, v in batch.items()}
        labels = batch.pop("labels")
        soft = batch.pop(SOFT, None)  # teacher probabilities: only in a distillation run
        logits, aux_logits = net(batch)
        loss = loss_fn(logits, labels, soft)
        if aux_logits is not None:
            loss = loss + config.train.aux_weight * aux_loss(aux_logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(live.model.parameters(), config.optim.grad_clip)
        live.optimizer.step()
        live.scheduler.step()
        live.optimizer.zero_grad()
        total += loss.item()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return total / len(loader)


def fit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: Splits,
    config: Config,
    info: ModelInfo,
    tracker: Tracker,
    resume: Checkpoint | None = None,
    dist: Dist = SINGLE,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train for the configured epochs (after ``resume``'s); leave the best-dev weights in ``model``.

    Under torchrun each rank trains on its own shard of every epoch's batches; rank 0 alone
    evaluates dev, logs and checkpoints, and the other ranks return an empty history.
    """
    model.to(dist.device)  # type: ignore[arg-type]  # transformers @wraps(Module.to) hides its signature
    soft = list(splits.soft) if splits.soft else None
    train_ds = encode(splits.train, tokenizer, info.max_length, info.context, soft, window=info.window)
    # Batch order comes from this generator alone, so a checkpoint can restore it exactly.
    generator = torch.Generator().manual_seed(config.seed)
    lengths = [len(ids) for ids in train_ds["input_ids"]]
    sampler = ShardedBatches(LengthGroupedBatches(lengths, config.train.batch_size, generator), dist)
    loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=DataCollatorWithPadding(tokenizer))
    live = _live(model, config, config.train.epochs * len(loader), generator)
    weights = class_weights(splits.train, config.train.class_weighting)
    loss_fn = StudentLoss(weights, config.distill).to(dist.device)
    progress = restore(resume, live) if resume else Progress()
    net = wrap(_Forward(model, aux=bool(config.train.aux_weight)), dist)  # after restore: one state
    record = ShardRecord(dist)
    record.watch_first_step(live.optimizer, model)
    every = config.train.checkpoint_every
    for epoch in range(progress.epoch + 1, config.train.epochs + 1):
        started = time.perf_counter()
        desc = f"epoch {epoch}/{config.train.epochs}"
        seed_epoch(config.seed, epoch, dist)
        # _run_epoch leaves dropout on; the Classifier's TorchBackend turns it off before scoring dev.
        train_loss = mean_over_ranks(_run_epoch(live, net, loader, loss_fn, config, desc, dist), dist)
        record.epoch(epoch, sampler.last_epoch, model)
        if not dist.is_main:
            continue  # on to the next epoch's first all-reduce, where rank 0 joins after dev
        classifier = Classifier(
            cpu_model(model, dist), tokenizer, info, batch_size=config.train.eval_batch_size
        )
        dev = evaluate(classifier, splits.dev)
        _note_epoch(progress, epoch, train_loss, time.perf_counter() - started, dev, tracker)
        if dev["macro_f1"] > progress.best["macro_f1"]:
            progress.best = dev | {"epoch": epoch}
            progress.best_state = copy.deepcopy(model.state_dict())
        progress.epoch = epoch
        # After the metrics are logged: a kill in between re-logs this epoch's identical values
        # on resume, rather than leaving a gap in the MLflow history.
        if every and epoch % every == 0:
            save_checkpoint(checkpoint_root(config), config, tracker.run_id, live, progress)
    if progress.best_state:  # rank 0's: the others never scored dev
        model.load_state_dict(progress.best_state)
    model.cpu().eval()  # the Classifier and save_pretrained after this work on the CPU
    return progress.best, progress.history


def _live(model: PreTrainedModel, config: Config, steps: int, generator: torch.Generator) -> Live:
    optimizer = _optimizer(model, config)
    scheduler = get_scheduler(
        config.optim.scheduler,
        optimizer,
        num_warmup_steps=math.ceil(config.optim.warmup_ratio * steps),
        num_training_steps=steps,
    )
    return Live(model, optimizer, scheduler, generator)


def _note_epoch(
    progress: Progress, epoch: int, train_loss: float, seconds: float, dev: dict[str, Any], tracker: Tracker
) -> None:
    row = {"epoch": epoch, "train_loss": train_loss, "seconds": seconds}
    progress.history.append(row | {"dev": dev})
    tracker.log_metrics({"train_loss": train_loss, **flat_metrics(dev, "dev")}, step=epoch)
    tqdm.write(
        f"epoch {epoch}: train loss {train_loss:.4f}, dev macro-F1 {dev['macro_f1']:.4f} ({seconds:.0f}s)"
    )


def train(
    config: Config, tracker: Tracker, resume: Checkpoint | None = None, dist: Dist = SINGLE
) -> TrainResult:
    """Run one training from a validated config (or continue ``resume``); return the model and metrics.

    Under torchrun every rank calls this; only rank 0 (``dist.is_main``) tests, saves and logs the
    model, and the other ranks' result has empty metrics.
    """
    seed_everything(config.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    splits = load_splits(config.data, config.distill)
    # Re-logging identical params is allowed by MLflow, so a resumed run logs them again harmlessly.
    tracker.log_params(flatten(config.model_dump(mode="json")))
    tracker.log_params({f"data_size_{k}": v for k, v in splits.sizes().items()})
    if config.distill and config.distill.soft_labels:  # what the teacher's labels cover, and whose
        tracker.log_params({f"data_size_{k}": v for k, v in splits.soft_sizes().items()})
        tracker.log_params(teacher_params(Path(config.distill.soft_labels)))
    tracker.log_text(json.dumps(splits.counts(), indent=2), "data/label_counts.json")
    tracker.log_text(config.to_yaml(), "train_config.yaml")

    model, tokenizer = build_model(
        config.model.base, config.model.max_length, config.model.dropout, (e.text for e in splits.train)
    )
    if config.train.aux_weight:
        attach_aux_head(model)  # before the optimizer and any checkpoint restore see the model
    info = model_info(config)  # the window too: dev is read as the saved folder will read it
    if resume is None and dist.is_main:
        discard_stale(config)
    started = time.perf_counter()
    best_dev, history = fit(model, tokenizer, splits, config, info, tracker, resume, dist)
    if not dist.is_main:
        return TrainResult(model_dir=Path(config.output_dir) / config.name, metrics={}, run_id=None)
    classifier = Classifier(model, tokenizer, info, batch_size=config.train.eval_batch_size)
    test = evaluate(classifier, splits.test) if splits.test else None
    seconds = time.perf_counter() - started + (resume.seconds if resume else 0.0)
    metrics = _metrics(best_dev, history, test, seconds, splits)
    metrics["resumed_from_epoch"] = resume.epoch if resume else None
    metrics |= calibrate(model, tokenizer, info, splits, config, tracker)  # T on dev, into config.json
    detach_aux_head(model)  # training-only: the saved model is a plain sequence classifier
    if test:
        tracker.log_metrics(flat_metrics(test, "test"))
    tracker.log_metrics({"best_epoch": best_dev["epoch"], "train_seconds": metrics["train_seconds"]})
    model_dir = save_model_dir(model, tokenizer, config, metrics, Path(config.output_dir) / config.name)
    write_reports(metrics, tracker)
    tracker.log_model(model_dir, [e.text for e in (splits.test or splits.dev)[:3]])
    # Only now: a kill before this point can still resume and log the model to the same run.
    remove_checkpoints(config)
    return TrainResult(model_dir=model_dir, metrics=metrics, run_id=tracker.run_id)


def _metrics(
    best_dev: dict[str, Any],
    history: list[dict[str, Any]],
    test: dict[str, Any] | None,
    seconds: float,
    splits: Splits,
) -> dict[str, Any]:
    """What ``metrics.json`` holds."""
    return {
        "best_epoch": best_dev["epoch"],
        "dev": {k: v for k, v in best_dev.items() if k != "epoch"},
        "test": test,
        "history": [
            {k: v for k, v in h.items() if k != "dev"} | {"dev_macro_f1": h["dev"]["macro_f1"]}
            for h in history
        ],
        "train_seconds": round(seconds, 1),
        "data": {"sizes": splits.sizes(), "label_counts": splits.counts()},
    }

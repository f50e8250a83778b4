"""Train the speaker model: BIO tags for SOURCE and CUE over sentence pairs from PolNeAR.

``python -m training.speakers_train --config configs/speakers.yaml [dotted.key=value ...]``

Learns from PolNeAR's train split only, picks the epoch on dev (the mean of source and cue
exact-match F1), scores test once at the end, writes ``<output_dir>/<name>/`` (loadable by
``inference.speakers.SpeakerExtractor``) and tracks the run in MLflow like the label model.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from inference.inputs import InputBuilder
from inference.model import CONFIG_KEY
from inference.speakers import TAGS, SpeakerExtractor, describe_speaker_model
from training.config import OptimConfig, TrackingConfig, apply_overrides, flatten, resolve_inheritance
from training.loop import LengthGroupedBatches, seed_everything
from training.modeling import build_model
from training.save import write_model_dir
from training.speakers_data import (
    IGNORE,
    SpeakerExample,
    keep_negatives,
    read_split,
    span_counts,
    span_scores,
    tag_ids,
)
from training.tracking import Tracker, tracking_run


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpeakerData(_Frozen):
    root: str = Field(default="../shared/datasets", description="holds polnear/data/{train,dev,test}")
    train_articles: int | None = Field(
        default=None, ge=1, description="N train articles, spread over the split; None: all"
    )
    dev_articles: int | None = Field(default=None, ge=1)
    test_articles: int | None = Field(default=None, ge=0, description="0: no test scoring")
    negatives: float = Field(default=1.0, ge=0, le=1, description="share of span-less train pairs kept")


class SpeakerModel(_Frozen):
    base: str = Field(description="'minilm', 'tiny-random', or a local model folder")
    max_length: int = Field(default=128, ge=8, le=512)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)


class SpeakerTrain(_Frozen):
    epochs: int = Field(default=2, ge=1)
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    threads: int | None = Field(default=None, ge=1)
    max_steps: int | None = Field(
        default=None, ge=1, description="stop each epoch after N batches (smoke runs)"
    )
    log_every: int = Field(default=50, ge=1, description="batches between progress lines")


class SpeakersConfig(_Frozen):
    name: str = Field(default="speakers", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 13
    output_dir: str = "models"
    data: SpeakerData = SpeakerData()
    model: SpeakerModel
    optim: OptimConfig = OptimConfig()
    train: SpeakerTrain = SpeakerTrain()
    tracking: TrackingConfig = TrackingConfig(experiment="claimlens-speakers", log_model=False)


def load_speakers_config(path: str | Path, overrides: list[str] | None = None) -> SpeakersConfig:
    """A validated speaker config (``inherit:`` and dotted overrides as for the label model).

    >>> load_speakers_config("configs/speakers.yaml", ["train.epochs=1"]).train.epochs  # doctest: +SKIP
    1
    """
    path = Path(path)
    data = apply_overrides(resolve_inheritance(path), overrides or [])
    try:
        return SpeakersConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{path}: invalid config: {problems}") from None


def build_token_model(
    config: SpeakerModel, texts: list[str]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh SOURCE/CUE tagger on the configured encoder, and its tokenizer."""
    return build_model(config.base, config.max_length, config.dropout, texts, labels=TAGS, head="token")


def encode_pairs(examples: list[SpeakerExample], build: InputBuilder) -> list[dict[str, list[int]]]:
    """Token ids, segment ids and tag labels of each pair, built by ``InputBuilder``."""
    aligned = build.aligned([e.text for e in examples], [e.context for e in examples])
    return [
        {
            "input_ids": a.encoded.input_ids,
            "token_type_ids": a.encoded.token_type_ids,
            "labels": tag_ids(a, e.spans),
        }
        for a, e in zip(aligned, examples, strict=True)
    ]


def collate(rows: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    batch = {
        "input_ids": torch.full((len(rows), width), pad_id, dtype=torch.long),
        "token_type_ids": torch.zeros((len(rows), width), dtype=torch.long),
        "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        "labels": torch.full((len(rows), width), IGNORE, dtype=torch.long),
    }
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        for key in ("input_ids", "token_type_ids", "labels"):
            batch[key][i, :n] = torch.tensor(r[key])
        batch["attention_mask"][i, :n] = 1
    return batch


def evaluate(extractor: SpeakerExtractor, examples: list[SpeakerExample]) -> dict[str, Any]:
    """Exact and overlap scores of source and cue in the sentence, and of the source in its context."""
    tagged = extractor.tag([e.text for e in examples], [e.context for e in examples])
    keys = {"source": ("SOURCE", 0), "cue": ("CUE", 0), "context_source": ("SOURCE", 1)}
    totals = {
        k: dict.fromkeys(("gold", "predicted", "exact", "overlap_predicted", "overlap_gold"), 0) for k in keys
    }
    for e, spans in zip(examples, tagged, strict=True):
        for key, (role, segment) in keys.items():
            text = e.text if segment == 0 else e.context or ""
            gold = [s for s in e.spans if s.role == role and s.segment == segment]
            found = [s for s in spans if s.role == role and s.segment == segment]
            for name, value in span_counts(text, gold, found).items():
                totals[key][name] += value
    scores: dict[str, Any] = {k: span_scores(v) for k, v in totals.items()}
    scores["score"] = round((scores["source"]["exact_f1"] + scores["cue"]["exact_f1"]) / 2, 4)
    return scores


def _optimizer(model: PreTrainedModel, optim: OptimConfig, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    groups = [
        {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": optim.weight_decay},
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=optim.lr)
    warmup = math.ceil(optim.warmup_ratio * steps)
    scheduler = get_scheduler(optim.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    return optimizer, scheduler


def _epoch(
    model: PreTrainedModel,
    batches: list[dict[str, torch.Tensor]],
    opt: tuple[Any, Any],
    config: SpeakersConfig,
    epoch: int,
) -> float:
    """One pass over ``batches``; the mean loss. Progress lines go to stderr (the log)."""
    optimizer, scheduler = opt
    model.train()
    total, started = 0.0, time.perf_counter()
    for step, batch in enumerate(batches, start=1):
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        total += loss.item()
        if step % config.train.log_every == 0 or step == len(batches):
            rate = (time.perf_counter() - started) / step
            eta = rate * (len(batches) - step)
            print(
                f"epoch {epoch} step {step}/{len(batches)} loss {total / step:.4f} "
                f"{rate:.2f}s/batch eta {eta / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )
    return total / max(len(batches), 1)


def _batches(
    rows: list[dict[str, list[int]]], config: SpeakersConfig, generator: torch.Generator, pad_id: int
) -> list[dict[str, torch.Tensor]]:
    order = LengthGroupedBatches([len(r["input_ids"]) for r in rows], config.train.batch_size, generator)
    chosen = list(order)[: config.train.max_steps] if config.train.max_steps else list(order)
    return [collate([rows[i] for i in idx], pad_id) for idx in chosen]


def save_speaker_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: SpeakersConfig,
    metrics: dict[str, Any],
    target: Path,
) -> Path:
    """Write the folder ``SpeakerExtractor.load`` reads; it appears only when complete."""
    section = describe_speaker_model(config.name, config.model.base, config.model.max_length)
    setattr(model.config, CONFIG_KEY, section)
    train_config = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return write_model_dir(model, tokenizer, train_config, metrics, target)


def _fit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_ex: list[SpeakerExample],
    dev_ex: list[SpeakerExample],
    config: SpeakersConfig,
    tracker: Tracker,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train for the configured epochs; leave the best-dev weights in ``model``."""
    build = InputBuilder(tokenizer, config.model.max_length, context=True)
    rows = encode_pairs(train_ex, build)
    generator = torch.Generator().manual_seed(config.seed)  # the batch order, from the seed alone
    per_epoch = math.ceil(len(rows) / config.train.batch_size)
    per_epoch = min(per_epoch, config.train.max_steps or per_epoch)
    optimizer = _optimizer(model, config.optim, config.train.epochs * per_epoch)
    best: dict[str, Any] = {"score": -1.0}
    best_state: dict[str, torch.Tensor] = {}
    history = []
    for epoch in range(1, config.train.epochs + 1):
        started = time.perf_counter()
        loss = _epoch(model, _batches(rows, config, generator, build.pad_id), optimizer, config, epoch)
        extractor = SpeakerExtractor(model, tokenizer, config.model.max_length, config.train.eval_batch_size)
        dev = evaluate(extractor, dev_ex)
        seconds = round(time.perf_counter() - started, 1)
        history.append(
            {"epoch": epoch, "train_loss": round(loss, 4), "seconds": seconds, "dev_score": dev["score"]}
        )
        tracker.log_metrics({"train_loss": loss, **_flat(dev, "dev")}, step=epoch)
        print(
            f"epoch {epoch}: loss {loss:.4f}, dev {json.dumps(dev)} ({seconds:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
        if dev["score"] > best["score"]:
            best, best_state = dev | {"epoch": epoch}, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return best, history


def _flat(scores: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in flatten(scores).items()}


def train(config: SpeakersConfig, tracker: Tracker) -> tuple[Path, dict[str, Any]]:
    """One training from a validated config: the model folder and its metrics."""
    seed_everything(config.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    root = Path(config.data.root)
    train_ex = keep_negatives(
        read_split(root, "train", config.data.train_articles), config.data.negatives, config.seed
    )
    dev_ex = read_split(root, "dev", config.data.dev_articles)
    sizes = {"train": len(train_ex), "dev": len(dev_ex)}
    tracker.log_params(
        flatten(config.model_dump(mode="json")) | {f"data_size_{k}": v for k, v in sizes.items()}
    )
    tracker.log_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "train_config.yaml")
    print(f"speakers: {sizes['train']} train pairs, {sizes['dev']} dev pairs", file=sys.stderr, flush=True)
    texts = [t for e in train_ex for t in (e.text, e.context or "")]
    model, tokenizer = build_token_model(config.model, texts)
    started = time.perf_counter()
    best, history = _fit(model, tokenizer, train_ex, dev_ex, config, tracker)
    test = None
    if config.data.test_articles != 0:
        extractor = SpeakerExtractor(model, tokenizer, config.model.max_length, config.train.eval_batch_size)
        test = evaluate(extractor, read_split(root, "test", config.data.test_articles))
        tracker.log_metrics(_flat(test, "test"))
    metrics = {
        "best_epoch": best["epoch"],
        "dev": {k: v for k, v in best.items() if k != "epoch"},
        "test": test,
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
        "data": {"sizes": sizes},
    }
    model_dir = save_speaker_model(model, tokenizer, config, metrics, Path(config.output_dir) / config.name)
    tracker.log_metrics({"best_epoch": best["epoch"], "train_seconds": metrics["train_seconds"]})
    tracker.log_file(model_dir / "metrics.json")
    if config.tracking.log_model:
        for path in sorted(model_dir.iterdir()):
            tracker.log_file(path, "model")
    return model_dir, metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.speakers_train",
        description="Train the speaker/cue tagger on PolNeAR's attribution annotations.",
        epilog="example: python -m training.speakers_train --config configs/speakers.yaml train.epochs=1",
    )
    parser.add_argument("--config", required=True, help="a YAML file, e.g. configs/speakers.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of the config")
    args = parser.parse_args(argv)
    try:
        config = load_speakers_config(args.config, args.overrides)
        with tracking_run(config.tracking, config.name) as tracker:
            model_dir, metrics = train(config, tracker)
    except ValueError as err:
        parser.exit(2, f"speakers_train: error: {err}\n")
    dev = metrics["dev"]
    print(f"model written to {model_dir}")
    print(
        f"best epoch {metrics['best_epoch']}: dev source exact F1 {dev['source']['exact_f1']:.4f}, "
        f"cue exact F1 {dev['cue']['exact_f1']:.4f}"
    )
    if metrics["test"]:
        test = metrics["test"]
        print(
            f"test source exact F1 {test['source']['exact_f1']:.4f}, cue exact F1 {test['cue']['exact_f1']:.4f}"
        )
    if tracker.run_id:
        print(f"MLflow run {tracker.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

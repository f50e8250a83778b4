"""Resumable per-epoch training checkpoints: safetensors for tensors, JSON for the rest, no pickles.

A checkpoint is a folder ``epoch-NNNN`` under ``<output_dir>/.checkpoints/<name>/`` holding
``weights.safetensors`` (the model now), ``best.safetensors`` (the best-dev weights so far),
``optimizer.safetensors`` (AdamW moments), ``rng.safetensors`` (torch and batch-order generator
states) and ``state.json`` (epoch, scheduler, history, best dev metrics, Python/NumPy RNG, MLflow
run id, the resolved config and its digest). It is written into a staging folder and renamed into
place, so a kill at any moment leaves the previous checkpoint whole.

Under torchrun, rank 0 alone writes checkpoints (every rank holds the same weights, optimizer and
batch-order generator, so one copy describes them all) and every rank restores the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.optim.lr_scheduler import LRScheduler

from training.config import Config, flatten

CHECKPOINTS = ".checkpoints"  # hidden, so it is never taken for a model directory
FORMAT = 1
STATE = "state.json"
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")


@dataclass(frozen=True)
class Live:
    """The objects of a running training whose state a checkpoint captures."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    generator: torch.Generator


@dataclass
class Progress:
    """What the loop has achieved so far: finished epochs, their history, the best dev epoch."""

    epoch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"macro_f1": -1.0})
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint on disk (tensors are read only by ``restore``)."""

    folder: Path
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])

    @property
    def run_id(self) -> str | None:
        return self.state["run_id"]

    @property
    def seconds(self) -> float:
        return float(sum(row["seconds"] for row in self.state["history"]))


def checkpoint_root(config: Config) -> Path:
    # Always a <name> folder of its own: it is emptied and deleted wholesale.
    parent = config.train.checkpoint_dir or Path(config.output_dir) / CHECKPOINTS
    return Path(parent) / config.name


def config_digest(config: Config) -> str:
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def latest_checkpoint(root: Path) -> Path | None:
    """The highest-epoch complete checkpoint folder (staging folders are never named ``epoch-*``)."""
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _EPOCH_DIR.match(p.name))]
    found = [(epoch, p) for epoch, p in found if (p / STATE).is_file()]
    return max(found)[1] if found else None


def load_checkpoint(config: Config) -> Checkpoint:
    """The latest checkpoint for ``config``; ``ValueError`` if there is none or its config differs."""
    root = checkpoint_root(config)
    folder = latest_checkpoint(root)
    if folder is None:
        raise ValueError(f"nothing to resume: no checkpoint for {config.name!r} in {root}")
    state = json.loads((folder / STATE).read_text())
    if state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {folder} has format {state.get('format')!r}, expected {FORMAT}")
    if state["config_digest"] != config_digest(config) and not _same_with_new_defaults(state, config):
        raise ValueError(
            f"checkpoint {folder} was written with another config: {_differences(state, config)}"
        )
    return Checkpoint(folder, state)


def _same_with_new_defaults(state: dict[str, Any], config: Config) -> bool:
    """True when the checkpoint's config, read by today's schema, is ``config``: the code gained
    settings since it was written (at their defaults, they change nothing), so it still resumes."""
    try:
        then = Config.model_validate(state["config"])
    except ValueError:  # a setting it used no longer exists
        return False
    return config_digest(then) == config_digest(config)


def _differences(state: dict[str, Any], config: Config) -> str:
    then, now = flatten(state["config"]), flatten(config.model_dump(mode="json"))
    keys = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
    changes = [f"{k} was {then.get(k)!r}, now {now.get(k)!r}" for k in keys]
    return "; ".join(changes) + " (resume with the same config and overrides, or train afresh)"


def save_checkpoint(root: Path, config: Config, run_id: str | None, live: Live, progress: Progress) -> Path:
    """Write ``epoch-NNNN`` atomically, then drop the older checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    target = root / f"epoch-{progress.epoch:04d}"
    try:
        save_file(_tensors(live.model.state_dict()), staging / "weights.safetensors")
        save_file(_tensors(progress.best_state), staging / "best.safetensors")
        tensors, groups = _split_optimizer(live.optimizer)
        save_file(tensors, staging / "optimizer.safetensors")
        rng = {"torch": torch.get_rng_state(), "loader": live.generator.get_state()}
        save_file(rng, staging / "rng.safetensors")
        state = _state(config, run_id, live, progress) | {"optimizer_groups": groups}
        (staging / STATE).write_text(json.dumps(state, indent=1) + "\n")
        staging.rename(target)  # the atomic step: before it the previous checkpoint is the latest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in root.iterdir():  # earlier epochs and staging folders left by a kill
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}


def _state(config: Config, run_id: str | None, live: Live, progress: Progress) -> dict[str, Any]:
    py_version, py_internal, py_gauss = random.getstate()
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    return {
        "format": FORMAT,
        "epoch": progress.epoch,
        "run_id": run_id,
        "config_digest": config_digest(config),
        "config": config.model_dump(mode="json"),
        "best": progress.best,
        "history": progress.history,
        "scheduler": live.scheduler.state_dict(),
        "python_random": [py_version, list(py_internal), py_gauss],
        "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Optimizer state as ``"<param index>.<name>"`` tensors plus JSON-able param groups."""
    state_dict = optimizer.state_dict()
    tensors = {}
    for index, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if not isinstance(value, torch.Tensor):
                # AdamW keeps only tensors; refuse rather than silently drop another optimizer's state.
                raise TypeError(f"optimizer state {name!r} is not a tensor")
            tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
    return tensors, state_dict["param_groups"]


def restore(checkpoint: Checkpoint, live: Live) -> Progress:
    """Put model, optimizer, scheduler and every RNG back as they were after the checkpoint's epoch."""
    folder, state = checkpoint.folder, checkpoint.state
    live.model.load_state_dict(load_file(folder / "weights.safetensors"))
    live.optimizer.load_state_dict(_joined_optimizer(live.optimizer, folder, state["optimizer_groups"]))
    live.scheduler.load_state_dict(state["scheduler"])
    rng = load_file(folder / "rng.safetensors")
    torch.set_rng_state(rng["torch"])
    live.generator.set_state(rng["loader"])
    version, internal, gauss = state["python_random"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy_random"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    best_state = load_file(folder / "best.safetensors")
    return Progress(checkpoint.epoch, state["best"], best_state, state["history"])


def _joined_optimizer(optimizer: torch.optim.Optimizer, folder: Path, groups: list[Any]) -> dict[str, Any]:
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(folder / "optimizer.safetensors").items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    # JSON turned tuples (AdamW's betas) into lists; give each value the type the live group has.
    live_groups = optimizer.state_dict()["param_groups"]
    groups = [
        {k: tuple(v) if isinstance(live.get(k), tuple) else v for k, v in group.items()}
        for group, live in zip(groups, live_groups, strict=True)
    ]
    return {"state": per_param, "param_groups": groups}


def remove_checkpoints(config: Config) -> None:
    """Delete this training's checkpoints, and the ``.checkpoints`` folder once it is empty."""
    root = checkpoint_root(config)
    if root.exists():
        shutil.rmtree(root)
    if root.parent.name == CHECKPOINTS:
        with contextlib.suppress(OSError):  # missing, or holding another training's checkpoints
            root.parent.rmdir()


def discard_stale(config: Config) -> None:
    """A training started without ``--resume`` starts over: an earlier run's checkpoint goes."""
    folder = latest_checkpoint(checkpoint_root(config))
    if folder is not None:
        print(
            f"starting afresh: discarding the checkpoint {folder} (use --resume to continue it)",
            file=sys.stderr,
        )
    remove_checkpoints(config)

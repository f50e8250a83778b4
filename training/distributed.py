"""Multi-process training plumbing: the process group, the batch sharding, the DDP wrapper.

``torchrun --nproc_per_node=N -m training --config ...`` starts N copies of the training; each
reads its rank from the environment torchrun sets. Without torchrun every helper here is the
identity, so a single-process training runs exactly as it always has.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as torch_dist

# Debug option: a folder where every rank writes the example indices it trained on and digests of
# its weights (rank-<r>.json), so a test can check that the shards are disjoint and the weights agree.
RECORD_ENV = "CLAIMLENS_SHARD_RECORD"
# Rank 0 evaluates dev (and saves a checkpoint) while the others wait in the next step's all-reduce;
# the wait must outlast a dev evaluation but not hang for ever if rank 0 died without a goodbye.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank among ``world_size`` and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """The one process that logs, evaluates, checkpoints and writes the model."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = Dist()


def from_env(env: dict[str, str] | None = None) -> Dist:
    """The ``Dist`` that torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` describe (``SINGLE`` without them).

    >>> from_env({}).world_size
    1
    """
    env = dict(os.environ) if env is None else env
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    return Dist(rank, world_size, local_rank, device)


@contextmanager
def process_group(dist: Dist) -> Iterator[None]:
    """Join torchrun's process group (NCCL on a GPU, gloo on a CPU) for the block, then leave it."""
    if not dist.enabled:
        yield
        return
    backend = "nccl" if dist.device.type == "cuda" else "gloo"
    if dist.device.type == "cuda":
        torch.cuda.set_device(dist.device)
    torch_dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


class BatchSampler(Protocol):
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[list[int]]: ...


class ShardedBatches:
    """This rank's share of each epoch's batches: every ``world_size``-th one, starting at ``rank``.

    Every rank draws the whole epoch from the same seeded generator, so all agree on the batch
    list and the shards are disjoint. The few batches beyond a multiple of ``world_size`` are
    left out, so every rank takes the same number of steps and none waits on a collective alone.
    With one process this yields the inner sampler's batches unchanged.
    """

    def __init__(self, batches: BatchSampler, dist: Dist) -> None:
        self.batches = batches
        self.dist = dist
        self.last_epoch: list[list[int]] = []  # what the latest pass handed out (for the record)

    def __len__(self) -> int:
        return len(self.batches) // self.dist.world_size

    def __iter__(self) -> Iterator[list[int]]:
        every = list(self.batches)
        end = len(self) * self.dist.world_size
        self.last_epoch = every[self.dist.rank : end : self.dist.world_size]
        yield from self.last_epoch


def wrap(module: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """``module`` in DistributedDataParallel (gradients averaged over ranks), or as it is alone."""
    if not dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def seed_epoch(seed: int, epoch: int, dist: Dist) -> None:
    """Give each rank its own dropout stream, restartable at any epoch (a no-op for one process).

    Rank 0's checkpoint holds only rank 0's RNG; seeding by (seed, epoch, rank) instead means a
    resumed multi-process training draws the same dropout masks as one never stopped.
    """
    if dist.enabled:
        torch.manual_seed(seed * 1_000_003 + epoch * 1_009 + dist.rank)


def mean_over_ranks(value: float, dist: Dist) -> float:
    """The mean of ``value`` over all ranks (``value`` itself for one process)."""
    if not dist.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=dist.device)
    torch_dist.all_reduce(tensor)
    return float(tensor.item()) / dist.world_size


def cpu_model(model: torch.nn.Module, dist: Dist) -> Any:
    """The model for the CPU-only ``Classifier``: itself on a CPU, a CPU copy beside a GPU."""
    return model if dist.device.type == "cpu" else copy.deepcopy(model).cpu()


def digest(module: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes, in name order: equal digests, equal weights."""
    hasher = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        hasher.update(name.encode())
        hasher.update(param.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()


class ShardRecord:
    """The debug record ``$CLAIMLENS_SHARD_RECORD/rank-<r>.json`` (nothing at all when unset).

    It holds the batches of example indices this rank trained on in each epoch, and digests of its
    weights after its first optimizer step and after each epoch: real values read from the sampler
    and the model, rewritten after every epoch.
    """

    def __init__(self, dist: Dist, folder: str | None = None) -> None:
        folder = os.environ.get(RECORD_ENV) if folder is None else folder
        self.path = Path(folder) / f"rank-{dist.rank}.json" if folder else None
        self.data: dict[str, Any] = {"rank": dist.rank, "world_size": dist.world_size, "epochs": {}}
        self.data["digests"] = {}

    def watch_first_step(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> None:
        if self.path is None:
            return

        def after_step(*_: object) -> None:
            self.data["digests"]["first_step"] = digest(model)
            handle.remove()

        handle = optimizer.register_step_post_hook(after_step)

    def epoch(self, epoch: int, batches: Iterable[list[int]], model: torch.nn.Module) -> None:
        if self.path is None:
            return
        self.data["epochs"][str(epoch)] = [list(batch) for batch in batches]
        self.data["digests"][f"epoch_{epoch}"] = digest(model)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data) + "\n")

"""``claimlens-train``: train a model from a YAML config (the one entry point reading argv)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import FrameType

from training.checkpoint import Checkpoint, checkpoint_root, latest_checkpoint, load_checkpoint
from training.config import Config, load_config
from training.distributed import Dist, from_env, process_group
from training.loop import train
from training.tracking import NullTracker, Tracker, tracking_run


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # KeyboardInterrupt, not SystemExit: tracking_run ends the MLflow run KILLED for it, and it
    # unwinds before save_model_dir, so no model directory is written.
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Let ``kill`` (SIGTERM) stop a training the way Ctrl-C does, restoring the old handler after."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(config: Config, err: KeyboardInterrupt, dist: Dist) -> int:
    if dist.is_main:  # the one process that writes checkpoints says where the last one is
        folder = latest_checkpoint(checkpoint_root(config))
        where = (
            f"the last checkpoint is {folder}: continue with --resume"
            if folder
            else "no checkpoint was saved"
        )
        print(f"claimlens-train: interrupted; {where}", file=sys.stderr)
    return 128 + signal.SIGTERM if err.args == ("SIGTERM",) else 128 + signal.SIGINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="claimlens-train",
        description="Train a claim/denial/official_statement/other classifier from a YAML config.",
        epilog="example: claimlens-train --config configs/quickstart.yaml train.epochs=2 optim.lr=3e-5",
    )
    parser.add_argument("--config", required=True, help="a YAML file under configs/")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted training from its last checkpoint (same config and overrides)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of the config")
    args = parser.parse_args(argv)
    dist = from_env()  # torchrun's RANK/WORLD_SIZE; one process without them
    try:
        config = load_config(args.config, args.overrides)
        # Every rank restores the same checkpoint: rank 0 writes the next one only after an epoch
        # that needs every rank's all-reduces, so no rank can read a half-replaced folder.
        resume = load_checkpoint(config) if args.resume else None
    except ValueError as err:
        parser.exit(2, f"claimlens-train: error: {err}\n")
    if dist.is_main:
        start = f"resuming after epoch {resume.epoch} of" if resume else "training"
        ranks = f" on {dist.world_size} processes" if dist.enabled else ""
        base = config.model.base
        print(f"{start} {config.name!r} from {args.config}{ranks} (base model {base})", file=sys.stderr)
    with process_group(dist):
        return _train(parser, config, resume, dist)


def _tracker(config: Config, resume: Checkpoint | None, dist: Dist) -> AbstractContextManager[Tracker]:
    """Rank 0 tracks (into the checkpoint's run when resuming); the other ranks log nothing."""
    if not dist.is_main:
        return nullcontext(NullTracker())
    return tracking_run(config.tracking, config.name, resume.run_id if resume else None)


def _train(parser: argparse.ArgumentParser, config: Config, resume: Checkpoint | None, dist: Dist) -> int:
    """Train inside the tracking run; rank 0 prints where the model went."""
    try:
        with _sigterm_interrupts(), _tracker(config, resume, dist) as tracker:
            result = train(config, tracker, resume, dist)
    except ValueError as err:
        parser.exit(2, f"claimlens-train: error: {err}\n")
    except KeyboardInterrupt as err:
        return _interrupted(config, err, dist)
    if not dist.is_main:
        return 0
    dev = result.metrics["dev"]
    print(f"model written to {result.model_dir}")
    print(f"best epoch {result.metrics['best_epoch']}: dev macro-F1 {dev['macro_f1']:.4f}")
    if result.metrics["test"]:
        print(f"test macro-F1 {result.metrics['test']['macro_f1']:.4f}")
    if result.run_id:
        print(f"MLflow run {result.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

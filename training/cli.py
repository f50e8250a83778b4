"""``claimlens-train``: train a model from a YAML config (the one entry point reading argv)."""

from __future__ import annotations

import argparse
import sys

from training.config import load_config
from training.loop import train
from training.tracking import tracking_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="claimlens-train",
        description="Train a claim/denial/official_statement/other classifier from a YAML config.",
        epilog="example: claimlens-train --config configs/quickstart.yaml train.epochs=2 optim.lr=3e-5",
    )
    parser.add_argument("--config", required=True, help="a YAML file under configs/")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of the config")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ValueError as err:
        parser.exit(2, f"claimlens-train: error: {err}\n")
    print(f"training {config.name!r} from {args.config} (base model {config.model.base})", file=sys.stderr)
    try:
        with tracking_run(config.tracking, config.name) as tracker:
            result = train(config, tracker)
    except ValueError as err:
        parser.exit(2, f"claimlens-train: error: {err}\n")
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

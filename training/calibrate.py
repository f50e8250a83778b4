"""``python -m training.calibrate``: fit the temperature of an existing model folder, no retraining.

    python -m training.calibrate --model models/default --data data/gold/dev.jsonl [--test data/gold/test.jsonl]

Fits T on ``--data`` (dev: never the test set), writes it into the folder's ``config.json``
(atomically), and prints NLL and ECE before and after, on ``--data`` and, given, on ``--test``.
"""

from __future__ import annotations

import argparse
import sys

from inference.predict import Classifier
from inference.readers import load_examples
from training.calibration import fit_temperature, held_out_logits, measure, write_temperature


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.calibrate",
        description="Fit a model folder's softmax temperature on dev data and store it in its config.json.",
    )
    parser.add_argument("--model", required=True, help="a model directory")
    parser.add_argument(
        "--data", required=True, nargs="+", help="labelled dev data (JSONL/CSV or stand-off gold)"
    )
    parser.add_argument("--test", nargs="+", help="held-out data to report ECE on (not used for fitting)")
    parser.add_argument(
        "--data-root", default="../shared/datasets", help="where stand-off gold finds its texts"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the temperature, write nothing")
    args = parser.parse_args(argv)
    try:
        # Raw logits do not depend on any temperature already in the folder: refitting is fine.
        classifier = Classifier.load(args.model)
        dev = [e for path in args.data for e in load_examples(path, args.data_root)]
        logits, gold = held_out_logits(classifier, dev)
        temperature = fit_temperature(logits, gold)
        report = measure(logits, gold, temperature, "fit")
        if args.test:
            test = [e for path in args.test for e in load_examples(path, args.data_root)]
            report |= measure(*held_out_logits(classifier, test), temperature, "test")
        if not args.dry_run:
            write_temperature(args.model, temperature)
    except (ValueError, OSError) as err:
        parser.exit(2, f"calibrate: error: {err}\n")
    where = "not written (--dry-run)" if args.dry_run else f"written to {args.model}/config.json"
    print(f"temperature {temperature:.4f} fitted on {len(dev)} sentences; {where}")
    for key, value in report.items():
        print(f"  {key:<24}{value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

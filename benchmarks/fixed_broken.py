"""Which gold sentences a change of model fixed and which it broke.

    python -m benchmarks.fixed_broken --before models/exp-default-4ep --after models/default \
        [--data data/gold/dev.jsonl] [--show 30]

Prints the counts (fixed: wrong before, right after; broken: the reverse) and a sample of the
fixed sentences with their previous sentence, for reading by eye; writes nothing.
"""

from __future__ import annotations

import argparse
import random

from inference import Classifier
from inference.inputs import Context
from inference.readers import load_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--data", default="data/gold/dev.jsonl")
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--show", type=int, default=30)
    args = parser.parse_args()

    examples = load_examples(args.data, args.data_root)
    texts, contexts = [e.text for e in examples], [e.context for e in examples]
    before = Classifier.load(args.before).predict(texts, contexts)
    after = Classifier.load(args.after).predict(texts, contexts)
    fixed = [(e, b) for e, b, a in zip(examples, before, after, strict=True) if b.label != e.label == a.label]
    broken = [e for e, b, a in zip(examples, before, after, strict=True) if b.label == e.label != a.label]
    print(f"{args.data} (n={len(examples)}): fixed {len(fixed)}, broken {len(broken)}\n")
    for e, b in random.Random(0).sample(fixed, min(args.show, len(fixed))):
        print(
            f"[{e.label}, was {b.label}] previous: {(e.context.previous if isinstance(e.context, Context) else e.context) or ''}\n    {e.text[:200]}"
        )


if __name__ == "__main__":
    main()

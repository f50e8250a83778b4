"""A teacher's soft labels over the pool, stand-off: each pool row plus ``probs`` (label -> probability).

The probabilities are the teacher's calibrated scores (``softmax(logits / T)`` with its folder's
temperature), each sentence read with the previous sentence of its document as context, just
as ``analyze`` reads an article. A sidecar ``<out stem>.meta.json`` names the teacher (folder,
name, config digest, temperature), the label order, the backend and the pool (path, sha256,
rows). Rows are appended chunk by chunk and flushed to disk, so a kill loses at most the chunk
being labelled; ``--resume`` keeps every complete line and continues after it.

    python -m training.soft_labels --teacher models/teacher --pool data/pool/pool.jsonl \\
        --out data/pool/teacher_probs.jsonl --backend onnx --quantize int8 [--resume]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from inference.calibration import softmax
from inference.labels import LABELS
from inference.predict import Classifier
from training.pool import KEYS, read_pool, with_text

# Rows per write: small enough that a kill costs seconds of teacher time, large enough that
# the classifier can batch sentences of similar length.
CHUNK = 256
# Stable across reloads, and small probabilities keep their size (a KL target at T > 1 lifts them).
DIGITS = 6
# What must agree for a resumed file to be one labelling, not two spliced together.
RESUME_KEYS = ("teacher_config_digest", "temperature", "labels", "backend", "quantize", "pool_sha256")


def meta_path(out: Path) -> Path:
    """The sidecar of a soft-label file: ``teacher_probs.jsonl`` -> ``teacher_probs.meta.json``."""
    return out.with_name(f"{out.stem}.meta.json")


def read_meta(out: Path) -> dict[str, Any]:
    """The sidecar of ``out``; ``ValueError`` when it is missing or not JSON."""
    path = meta_path(out)
    if not path.is_file():
        raise ValueError(f"{path} is missing: soft labels come with it (python -m training.soft_labels)")
    try:
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err.msg}") from None
    return meta


def teacher_params(out: Path) -> dict[str, Any]:
    """What a training run logs about the teacher behind a soft-label file (from its sidecar)."""
    meta = read_meta(out)
    keys = ("teacher", "teacher_name", "teacher_config_digest", "backend", "quantize", "pool_sha256")
    return {f"soft_labels.{k}": meta.get(k) for k in keys}


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def describe(
    teacher: Path, classifier: Classifier, pool: Path, rows: int, backend: str, quantize: str
) -> dict[str, Any]:
    """The sidecar's content for labelling ``pool`` with ``classifier`` (loaded from ``teacher``)."""
    return {
        "teacher": str(teacher),
        "teacher_name": classifier.info.name,
        "teacher_config_digest": classifier.info.config_digest,
        "temperature": classifier.temperature,
        "labels": list(LABELS),
        "backend": backend,
        "quantize": quantize,
        "pool": str(pool),
        "pool_sha256": _sha256(pool),
        "rows": rows,
    }


def done_rows(out: Path, pool_rows: list[dict[str, object]]) -> int:
    """How many rows a partial file holds; its torn last line (a kill mid-write) is cut off.

    ``ValueError`` if the rows written so far are not the pool's first rows, in order.
    """
    data = out.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]  # everything up to the last complete line
    if len(whole) != len(data):
        with out.open("r+b") as f:
            f.truncate(len(whole))
    lines = whole.decode("utf-8").splitlines()
    if len(lines) > len(pool_rows):
        raise ValueError(f"{out} has {len(lines)} rows, more than the pool's {len(pool_rows)}")
    for n, (line, expected) in enumerate(zip(lines, pool_rows, strict=False), start=1):
        row = json.loads(line)
        if [row.get(k) for k in KEYS] != [expected[k] for k in KEYS]:
            raise ValueError(f"{out}:{n}: not the pool's row {n}; start afresh without --resume")
    return len(lines)


def _start(out: Path, meta: dict[str, Any], rows: list[dict[str, object]], resume: bool) -> int:
    """Check or write the sidecar; the number of rows already labelled."""
    if not resume:
        if out.exists():
            raise ValueError(f"{out} exists: continue it with --resume, or remove it to start afresh")
        out.parent.mkdir(parents=True, exist_ok=True)
        meta_path(out).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        out.touch()
        return 0
    if not out.is_file():
        raise ValueError(f"nothing to resume: {out} does not exist")
    before = read_meta(out)
    changed = [k for k in RESUME_KEYS if before.get(k) != meta[k]]
    if changed:
        names = ", ".join(f"{k} was {before.get(k)!r}, now {meta[k]!r}" for k in changed)
        raise ValueError(f"{out} was labelled differently ({names}); start afresh without --resume")
    return done_rows(out, rows)


def _row(row: dict[str, object], probs: list[float]) -> str:
    scores = {label: float(f"{p:.{DIGITS}g}") for label, p in zip(LABELS, probs, strict=True)}
    return json.dumps({k: row[k] for k in KEYS} | {"probs": scores}) + "\n"


def label_pool(
    classifier: Classifier,
    rows: list[dict[str, object]],
    root: Path,
    out: Path,
    start: int = 0,
    chunk: int = CHUNK,
) -> int:
    """Append soft labels for ``rows[start:]`` to ``out``, one flushed chunk at a time; rows written.

    >>> clf = Classifier.load("models/teacher", backend="onnx", quantize="int8")  # doctest: +SKIP
    >>> label_pool(clf, read_pool(Path("data/pool/pool.jsonl")), Path("../shared/datasets"), out)  # doctest: +SKIP
    40000
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    with (
        out.open("a", encoding="utf-8") as f,
        tqdm(total=len(rows), initial=start, unit="sentence", desc="soft labels", file=sys.stderr) as bar,
    ):
        for begin in range(start, len(rows), chunk):
            part = rows[begin : begin + chunk]
            sentences = with_text(part, root)
            logits = classifier.logits([s.text for s in sentences], [s.context for s in sentences])
            probs = softmax(logits, classifier.temperature)  # the calibrated scores predict() gives
            f.write("".join(_row(r, p) for r, p in zip(part, probs.tolist(), strict=True)))
            f.flush()
            os.fsync(f.fileno())  # written means on disk: a kill after this loses none of it
            bar.update(len(part))
    return len(rows) - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.soft_labels",
        description="Label the pool with a teacher model: stand-off rows plus class probabilities.",
    )
    parser.add_argument("--teacher", type=Path, required=True, help="a trained model folder")
    parser.add_argument("--pool", type=Path, default=Path("data/pool/pool.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("data/pool/teacher_probs.jsonl"))
    parser.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--quantize", choices=("none", "int8"), default="none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--chunk", type=int, default=CHUNK, help="rows per write (at most this many lost to a kill)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads")
    parser.add_argument("--resume", action="store_true", help="continue a partial --out file")
    args = parser.parse_args(argv)
    try:
        rows = read_pool(args.pool)
        classifier = Classifier.load(
            args.teacher,
            batch_size=args.batch_size,
            backend=args.backend,
            quantize=args.quantize,
            threads=args.threads,
        )
        meta = describe(args.teacher, classifier, args.pool, len(rows), args.backend, args.quantize)
        start = _start(args.out, meta, rows, args.resume)
        if start:
            print(f"resuming after {start} of {len(rows)} rows", file=sys.stderr)
        written = label_pool(classifier, rows, args.data_root, args.out, start, args.chunk)
    except ValueError as err:
        parser.exit(2, f"training.soft_labels: error: {err}\n")
    print(f"{written} rows labelled by {meta['teacher_name']} into {args.out} ({len(rows)} in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

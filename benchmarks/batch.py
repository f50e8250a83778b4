"""Rows per second of `claimlens batch` (Spark, local mode) against `claimlens predict --input`.

    python -m benchmarks.batch --model models/default [--input data/corpus/test.jsonl] [--limit N] [--repeat N]

Both commands run as a user runs them, in a fresh process on the same JSONL file, with the same
backend (ONNX int8 where the model folder has it, else torch); each is timed from start to
exit (model loading, and Spark's JVM, included) and `batch` also reports its job time without
the session start. Prints a table and writes ``benchmarks/results/batch.json``. On one small
machine Spark mostly adds start-up; it pays where the data no longer fits one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cpu import cpu_name
from inference.backends import ONNX_FILES

RESULTS = Path("benchmarks/results")


def timed(command: list[str]) -> tuple[float, str]:
    """Wall seconds of ``command`` and its stderr; a failed command stops the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stderr


def subset(src: Path, limit: int | None, repeat: int, work: Path) -> tuple[Path, int]:
    """The input: its first ``limit`` rows, ``repeat`` times over (as new documents), and its size."""
    lines = [line for line in src.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    if repeat == 1 and limit is None:
        return src, len(lines)
    rows = [json.loads(line) for line in lines]
    target = work / "input.jsonl"
    with target.open("w", encoding="utf-8") as f:
        for copy in range(repeat):
            for i, row in enumerate(rows):
                doc = {"doc": f"{row['doc']}#{copy}"} if row.get("doc") is not None else {}
                f.write(json.dumps(row | doc | {"id": f"{copy}-{row.get('id', i)}"}) + "\n")
    return target, len(rows) * repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder")
    parser.add_argument("--input", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--limit", type=int, help="only the first N rows")
    parser.add_argument("--repeat", type=int, default=1, help="the rows N times over, as new documents")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", type=Path, default=RESULTS / "batch.json")
    args = parser.parse_args()
    onnx = (Path(args.model) / ONNX_FILES["int8"]).is_file()
    backend = ["--backend", "onnx", "--quantize", "int8"] if onnx else ["--backend", "torch"]
    cli = [sys.executable, "-m", "inference"]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        src, rows = subset(args.input, args.limit, args.repeat, work)
        load = os.getloadavg()[0]
        predict_s, _ = timed([*cli, "predict", "--model", args.model, "--input", str(src),
                              "--output", str(work / "out.jsonl"), *backend])  # fmt: skip
        batch_s, log = timed([*cli, "batch", "--model", args.model, "--input", str(src),
                              "--output", str(work / "out.parquet"), "--master", args.master, *backend])  # fmt: skip
    found = re.search(r"(\d+) rows in, (\d+) rows out .*; ([\d.]+) s, ([\d.]+) rows/s", log)
    if not found or int(found[1]) != rows or int(found[2]) != rows:
        raise SystemExit(f"unexpected `claimlens batch` summary:\n{log[-2000:]}")
    result: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "loadavg_1m_before": round(load, 2),
        "model": args.model,
        "backend": "onnx_int8" if onnx else "torch",
        "input": str(args.input),
        "repeat": args.repeat,
        "rows": rows,
        "master": args.master,
        "predict_s": round(predict_s, 2),
        "predict_rows_per_s": round(rows / predict_s, 1),
        "batch_s": round(batch_s, 2),
        "batch_rows_per_s": round(rows / batch_s, 1),
        "batch_job_s": float(found[3]),
        "batch_job_rows_per_s": float(found[4]),
        "note": "wall time per command, process start to exit; noisy on a shared CPU",
    }
    print(f"{'command':<36} {'seconds':>8} {'rows/s':>8}")
    print(f"{'claimlens predict --input':<36} {predict_s:>8.1f} {rows / predict_s:>8.1f}")
    print(f"{'claimlens batch (' + args.master + ')':<36} {batch_s:>8.1f} {rows / batch_s:>8.1f}")
    print(f"{'  of which the Spark job':<36} {float(found[3]):>8.1f} {float(found[4]):>8.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""``claimlens``: predict, analyze, evaluate and serve from the command line."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

COLOURS = {"claim": "33", "denial": "31", "official_statement": "36", "other": "2"}


def _read_jsonl_inputs(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {err.msg}") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                raise ValueError(f"{path}:{lineno}: each row needs a non-empty string 'text'")
            yield lineno, row


def _load(args: argparse.Namespace) -> Any:
    from inference.predict import Classifier

    return Classifier.load(
        args.model, backend=args.backend or "torch", quantize=args.quantize or "none", threads=args.threads
    )


def cmd_predict(args: argparse.Namespace) -> int:
    if bool(args.texts) == bool(args.input):
        raise ValueError("give sentences as arguments or --input FILE.jsonl, not both or neither")
    clf = _load(args)
    if args.texts:
        rows: list[dict[str, Any]] = [{"id": i, "text": t} for i, t in enumerate(args.texts)]
    else:
        rows = [row | {"id": row.get("id", lineno)} for lineno, row in _read_jsonl_inputs(Path(args.input))]
    # Rows of one doc are in reading order: each takes the one before it as context.
    last_in_doc: dict[Any, str] = {}
    contexts: list[str | None] = []
    for row in rows:
        doc = row.get("doc")
        contexts.append(last_in_doc.get(doc) if doc is not None else None)
        if doc is not None:
            last_in_doc[doc] = row["text"]
    predictions = clf.predict([r["text"] for r in rows], contexts)
    out_rows = [
        {"id": r["id"], "label": p.label, "score": p.score, "scores": p.scores, "truncated": p.truncated}
        for r, p in zip(rows, predictions, strict=True)
    ]
    if args.output:
        # Write beside the target, then rename: an interrupted run leaves no partial file.
        target = Path(args.output)
        tmp = target.with_name(f".{target.name}.partial")
        with tmp.open("w", encoding="utf-8") as f:
            for row in out_rows:
                f.write(json.dumps(row) + "\n")
        tmp.replace(target)
        print(f"wrote {len(out_rows)} predictions to {target}", file=sys.stderr)
    else:
        for row in out_rows:
            print(json.dumps(row))
    return 0


def _table(results: list[Any], out: TextIO, colour: bool) -> None:
    width = max(len(label) for label in COLOURS)
    for r in results:
        label = f"{r.label:<{width}}"
        if colour:
            label = f"\033[{COLOURS[r.label]}m{label}\033[0m"
        out.write(f"{label}  {r.score:5.2f}  {r.sentence}\n")


def cmd_analyze(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    results = _load(args).analyze(text)
    if args.format == "table":
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        _table(results, sys.stdout, colour)
    elif args.format == "jsonl":
        for r in results:
            print(
                json.dumps(
                    {
                        "sentence": r.sentence,
                        "start": r.start,
                        "end": r.end,
                        "label": r.label,
                        "score": r.score,
                        "scores": r.scores,
                        "truncated": r.truncated,
                    }
                )
            )
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(["start", "end", "label", "score", "sentence"])
        for r in results:
            writer.writerow([r.start, r.end, r.label, f"{r.score:.4f}", r.sentence])
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from inference.evaluate import compute_metrics, format_report
    from inference.records import load_examples

    examples = [e for path in args.data for e in load_examples(path, args.data_root)]
    clf = _load(args)
    predictions = clf.predict([e.text for e in examples], [e.context for e in examples])
    metrics = compute_metrics([e.label for e in examples], [p.label for p in predictions])
    print(format_report(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from inference.app import Settings, run_server

    # Keys come from the environment or a file, never from argv (which `ps` shows to everyone).
    env = dict(os.environ) | {"CLAIMLENS_MODEL": args.model}
    if args.api_keys_file:
        env["CLAIMLENS_API_KEYS_FILE"] = args.api_keys_file
    settings = Settings.from_env(env)
    given = {
        "backend": args.backend,
        "quantize": args.quantize,
        "threads": args.threads,
        "batch_wait_ms": args.batch_wait_ms,
        "max_batch": args.max_batch,
        "max_queue": args.max_queue,
        "cors_origins": tuple(args.cors_origin) if args.cors_origin else None,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in given.items() if v is not None})
    if settings.api_keys:
        print(
            f"API keys required on every route but /health ({len(settings.api_keys)} configured)",
            file=sys.stderr,
        )
    run_server(settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from inference.export import export_onnx

    path = export_onnx(args.model, quantize=args.quantize)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _runtime_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", choices=["torch", "onnx"], help="default: torch")
    common.add_argument(
        "--quantize", choices=["none", "int8"], help="int8 needs --backend onnx; default: none"
    )
    common.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claimlens", description="Label news sentences as claim, denial, official_statement or other."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    runtime = _runtime_options()

    p = sub.add_parser("predict", parents=[runtime], help="classify sentences given as arguments or as JSONL")
    p.add_argument("--model", required=True, help="a model directory, e.g. models/quickstart")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--input", help="JSONL with id, text and optional doc (rows of a doc in reading order)")
    p.add_argument("--output", help="write JSONL here instead of stdout")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("analyze", parents=[runtime], help="split an article into sentences and label each")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=["table", "jsonl", "csv"], default="table")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("file", help="a text file, or - for standard input")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "evaluate", parents=[runtime], help="accuracy, macro-F1, per-class scores and confusion matrix"
    )
    p.add_argument("--model", required=True)
    p.add_argument(
        "--data", required=True, nargs="+", help="labelled JSONL/CSV files, or stand-off gold JSONL"
    )
    p.add_argument("--data-root", default="../shared/datasets", help="where stand-off gold finds its texts")
    p.add_argument("--json", help="also write the metrics as JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a model directory to ONNX, optionally quantised to int8")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--quantize", choices=["none", "int8"], default="none")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", parents=[runtime], help="serve the HTTP endpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info")
    p.add_argument("--batch-wait-ms", type=float, help="micro-batching window (default 3; 0 turns it off)")
    p.add_argument("--max-batch", type=int, help="sentences per micro-batch (default 64)")
    p.add_argument("--max-queue", type=int, help="requests waiting before 503 Retry-After (default 64)")
    p.add_argument(
        "--cors-origin", action="append", help="a browser origin allowed to call the API (repeatable)"
    )
    p.add_argument(
        "--api-keys-file", help="a file of API keys, one per line (or set CLAIMLENS_API_KEYS=key1,key2)"
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError) as err:
        parser.exit(2, f"claimlens {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

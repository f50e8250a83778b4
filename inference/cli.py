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
    from inference.inputs import doc_key

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
            doc_key(row.get("doc"), f"{path}:{lineno}: doc")
            if row.get("idx") is not None and (
                isinstance(row["idx"], bool) or not isinstance(row["idx"], int)
            ):
                raise ValueError(f"{path}:{lineno}: idx must be an integer")
            yield lineno, row


def _load(args: argparse.Namespace) -> Any:
    from inference.predict import Classifier
    from inference.registry import resolve_model

    return Classifier.load(
        resolve_model(args.model),
        backend=args.backend or "torch",
        quantize=args.quantize or "none",
        threads=args.threads,
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from inference.inputs import context_windows

    if bool(args.texts) == bool(args.input):
        raise ValueError("give sentences as arguments or --input FILE.jsonl, not both or neither")
    if args.texts:
        rows: list[dict[str, Any]] = [{"id": i, "text": t} for i, t in enumerate(args.texts)]
    else:
        rows = [row | {"id": row.get("id", lineno)} for lineno, row in _read_jsonl_inputs(Path(args.input))]
    # Rows of one doc are read in idx order (file order where a doc has no idx). The widest
    # window, found before the model loads (a bad idx fails fast): the model reads its own part.
    contexts = context_windows(
        [r["text"] for r in rows], [r.get("doc") for r in rows], [r.get("idx") for r in rows]
    )
    # A bar (rate, ETA) for a file on a terminal, or whenever --progress asks for one.
    progress = True if args.progress else (None if args.input else False)
    predictions = _load(args).predict(
        [r["text"] for r in rows], contexts, explain=args.explain, progress=progress
    )
    out_rows = [
        {"id": r["id"], "label": p.label, "score": p.score, "scores": p.scores, "truncated": p.truncated}
        | _explanation(p)
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


def _explanation(p: Any) -> dict[str, Any]:
    """``{"explanation": ...}`` for a prediction that has one (``--explain``), else nothing."""
    from dataclasses import asdict

    return {"explanation": asdict(p.explanation)} if p.explanation is not None else {}


def _why(explanation: Any) -> str:
    """The words that raised the label's score most: ``denied +0.41, said +0.05 (context)``."""
    words = [
        f"{s.text} {s.score:+.2f}" + (" (context)" if s.segment == "context" else "")
        for s in explanation.top(5)
        if s.score >= 0.005  # what would print as +0.00 says nothing
    ]
    return ", ".join(words) or "no single word raised it"


def _who(a: Any) -> str:
    """An attribution in words: ``They → a NATO official (official), cue "added"``."""
    words = " ".join(a.speaker.text.split()) if a.speaker else "?"
    if a.antecedent:
        words += f" → {' '.join(a.antecedent.text.split())}"
    notes = [a.speaker_type.replace("_", "-")] if a.speaker_type else []
    if a.speaker_in_previous:
        notes.append("in the previous sentence")
    if notes:
        words += f" ({'; '.join(notes)})"
    return words + (f', cue "{" ".join(a.cue.text.split())}"' if a.cue else "")


def _table(results: list[Any], out: TextIO, colour: bool) -> None:
    width = max(len(label) for label in COLOURS)
    for r in results:
        label = f"{r.label:<{width}}"
        if colour:
            label = f"\033[{COLOURS[r.label]}m{label}\033[0m"
        out.write(f"{label}  {r.score:5.2f}  {r.sentence}\n")
        if r.attribution is not None:
            out.write(f"{'':<{width}}  who:  {_who(r.attribution)}\n")
        if r.explanation is not None:
            out.write(f"{'':<{width}}  why:  {_why(r.explanation)}\n")


SPEAKER_FIELDS = ("speaker", "cue", "speaker_type", "speaker_in_previous", "antecedent")
SPEAKER_COLUMNS = ["speaker", "speaker_type", "speaker_in_previous", "antecedent", "cue"]


def _speaker_fields(r: Any) -> dict[str, Any]:
    """A sentence's speaker, cue (``{text, start, end}`` in article offsets) and the rest, or nulls."""
    from dataclasses import asdict

    return asdict(r.attribution) if r.attribution is not None else dict.fromkeys(SPEAKER_FIELDS)


def _jsonl_row(r: Any, speakers: bool) -> dict[str, Any]:
    row = {
        "sentence": r.sentence,
        "start": r.start,
        "end": r.end,
        "label": r.label,
        "score": r.score,
        "scores": r.scores,
        "truncated": r.truncated,
    }
    return row | (_speaker_fields(r) if speakers else {}) | _explanation(r)


def _speaker_cells(r: Any) -> list[str]:
    """The CSV cells of ``SPEAKER_COLUMNS``: span texts, type, true/false; empty without an attribution."""
    a = r.attribution
    if a is None:
        return [""] * len(SPEAKER_COLUMNS)
    texts = [span.text if span else "" for span in (a.speaker, a.antecedent, a.cue)]
    return [texts[0], a.speaker_type or "", str(a.speaker_in_previous).lower(), texts[1], texts[2]]


def _write_csv(results: list[Any], out: TextIO, speakers: bool, explain: bool) -> None:
    writer = csv.writer(out)
    extra = SPEAKER_COLUMNS if speakers else []
    writer.writerow(["start", "end", "label", "score", *extra, "sentence"] + (["why"] if explain else []))
    for r in results:
        who = _speaker_cells(r) if speakers else []
        why = [_why(r.explanation)] if r.explanation is not None else []
        writer.writerow([r.start, r.end, r.label, f"{r.score:.4f}", *who, r.sentence, *why])


def cmd_analyze(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    results = _load(args).analyze(text, explain=args.explain, speakers=args.speakers)
    speakers = args.speakers is not None
    if args.format == "table":
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        _table(results, sys.stdout, colour)
    elif args.format == "jsonl":
        for r in results:
            print(json.dumps(_jsonl_row(r, speakers)))
    else:
        _write_csv(results, sys.stdout, speakers, args.explain)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from inference.evaluate import evaluate_examples, format_report
    from inference.readers import load_examples
    from inference.reports import check_report_path

    if args.report:
        check_report_path(args.report)  # before minutes of predicting, not after
    elif args.mlflow_run or args.log_to_mlflow:
        raise ValueError(
            "--mlflow-run and --log-to-mlflow log the report: give --report FILE.md or FILE.html"
        )
    examples = [e for path in args.data for e in load_examples(path, args.data_root)]
    clf = _load(args)
    metrics = evaluate_examples(clf, examples, progress=True if args.progress else None)
    print(format_report(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    if args.report:
        _report(args, clf, metrics)
    return 0


def _report(args: argparse.Namespace, clf: Any, metrics: dict[str, Any]) -> None:
    from inference.reports import ReportContext, log_report, write_report

    context = ReportContext(clf.info.name, str(args.model), clf.backend.name, tuple(map(str, args.data)))
    files = write_report(args.report, metrics, context)
    print(f"wrote {', '.join(map(str, files))}", file=sys.stderr)
    if args.mlflow_run or args.log_to_mlflow:
        run_id = log_report(files, metrics, context, args.mlflow_run, args.tracking_uri)
        print(f"logged the report to MLflow run {run_id}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from inference.registry import resolve_model

    args.model = args.model and str(resolve_model(args.model))  # models:/NAME@ALIAS: a cached folder
    from inference.server import ServerDidNotStart, run_server
    from inference.settings import load_settings

    # Flags win over CLAIMLENS_* variables. Keys come from the environment or a file, never
    # from argv (which `ps` shows to everyone).
    flags = {
        "model_dir": args.model,
        "speaker_model_dir": args.speakers,
        "api_keys_file": args.api_keys_file,
        "backend": args.backend,
        "quantize": args.quantize,
        "threads": args.threads,
        "batch_wait_ms": args.batch_wait_ms,
        "max_batch": args.max_batch,
        "max_queue": args.max_queue,
        "cors_origins": tuple(args.cors_origin) if args.cors_origin else None,
    }
    settings = load_settings(**{k: v for k, v in flags.items() if v is not None})
    if settings.api_keys:
        print(
            f"API keys required on every route but /health ({len(settings.api_keys)} configured)",
            file=sys.stderr,
        )
    try:
        run_server(settings, host=args.host, port=args.port, log_level=args.log_level)
    except ServerDidNotStart as err:
        print(f"claimlens serve: error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from inference.export import Calibration, export_onnx, int8_summary

    quantize = args.quantize or ("int8" if args.int8 else "none")  # --int8 alone means int8
    if args.int8 and quantize != "int8":
        raise ValueError("--int8 applies only with --quantize int8")
    given = {
        "data": args.calibration_data,
        "data_root": args.data_root,
        "sentences": args.calibration_sentences,
        "method": args.calibration_method,
    }
    calibration = (
        Calibration(**{k: v for k, v in given.items() if v is not None})
        if any(v is not None for v in given.values())
        else None
    )
    path = export_onnx(
        args.model, quantize=quantize, fuse=args.fuse, int8=args.int8 or "static", calibration=calibration
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if quantize == "int8":
        print(int8_summary(path))
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    try:
        from inference.spark_batch import BatchJob, Columns, check_job, run_batch, spark_session
    except ImportError as err:
        raise ValueError(f"batch needs pyspark ({err}): pip install 'claimlens[spark]'") from None
    from pyspark.sql import SparkSession

    columns = Columns(args.text_column, args.doc_column, args.idx_column, args.id_column)
    job = BatchJob(
        args.model, args.input, args.output, columns, args.format, args.backend, args.quantize,
        args.threads, args.max_chars, args.partitions, args.overwrite, args.batch_size,
    )  # fmt: skip
    check_job(job)  # before a JVM starts
    existing = SparkSession.getActiveSession()  # a caller's session (tests, a notebook) stays open
    spark = existing or spark_session(args.master)
    try:
        s = run_batch(spark, job)
    finally:
        if existing is None:
            spark.stop()
    errors = ", ".join(f"{kind}: {n}" for kind, n in s.errors.items()) or "none"
    print(
        f"{s.rows_in} rows in, {s.rows_out} rows out to {args.output} ({s.backend}): {s.scored} scored "
        f"({s.truncated} truncated), {s.rows_out - s.scored} errors ({errors}); "
        f"{s.seconds:.1f} s, {s.rows_out / max(s.seconds, 1e-9):.1f} rows/s",
        file=sys.stderr,
    )
    return 0 if s.rows_in == s.rows_out else 1


def cmd_promote(args: argparse.Namespace) -> int:
    from inference.registry import promote

    result = promote(args.model, args.alias, args.version, args.force, args.tracking_uri)
    print(result.report())
    return 0 if result.moved or result.champion == result.candidate else 1


def _runtime_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", choices=["torch", "onnx"], help="default: torch")
    common.add_argument(
        "--quantize", choices=["none", "int8"], help="int8 needs --backend onnx; default: none"
    )
    common.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    return common


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", help="write a report.md (PNGs beside it) or a self-contained report.html")
    to_mlflow = p.add_mutually_exclusive_group()
    to_mlflow.add_argument("--mlflow-run", metavar="RUN_ID", help="log the report to this MLflow run")
    to_mlflow.add_argument(
        "--log-to-mlflow",
        action="store_true",
        help="log the report to a new run in experiment claimlens-eval",
    )
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")


def _add_predict(sub: Any, runtime: argparse.ArgumentParser) -> None:
    p = sub.add_parser("predict", parents=[runtime], help="classify sentences given as arguments or as JSONL")
    p.add_argument(
        "--model", required=True, help="a model directory (e.g. models/quickstart) or models:/NAME@ALIAS"
    )
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument(
        "--input",
        help="JSONL with id, text and optional doc and idx (a context model reads each row's "
        "neighbours in its doc, in idx order, or file order without idx)",
    )
    p.add_argument("--output", help="write JSONL here instead of stdout")
    p.add_argument(
        "--explain", action="store_true", help="add each row's explanation: the words behind its label"
    )
    p.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
    p.set_defaults(func=cmd_predict)


def _add_analyze(sub: Any, runtime: argparse.ArgumentParser) -> None:
    p = sub.add_parser("analyze", parents=[runtime], help="split an article into sentences and label each")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=["table", "jsonl", "csv"], default="table")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("--explain", action="store_true", help="show the words behind each label")
    p.add_argument(
        "--speakers",
        metavar="DIR",
        help="a speaker model directory (e.g. models/speakers): add each claim, denial and "
        "official_statement's speaker and cue",
    )
    p.add_argument("file", help="a text file, or - for standard input")
    p.set_defaults(func=cmd_analyze)


def _add_evaluate(sub: Any, runtime: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "evaluate", parents=[runtime], help="accuracy, macro-F1, per-class scores and confusion matrix"
    )
    p.add_argument("--model", required=True)
    p.add_argument(
        "--data", required=True, nargs="+", help="labelled JSONL/CSV files, or stand-off gold JSONL"
    )
    p.add_argument("--data-root", default="../shared/datasets", help="where stand-off gold finds its texts")
    p.add_argument("--json", help="also write the metrics as JSON here")
    _report_options(p)
    p.set_defaults(func=cmd_evaluate)


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="export a model directory to ONNX, optionally quantised to int8")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--quantize", choices=["none", "int8"], help="default: none (int8 with --int8)")
    p.add_argument(
        "--fuse",
        action="store_true",
        help="fuse attention, LayerNorm and GELU with ONNX Runtime's transformer optimizer first"
        " (slower on the CPUs measured; `python -m benchmarks.onnx_variants` compares on yours)",
    )
    p.add_argument(
        "--int8",
        choices=["static", "dynamic"],
        help="static (default): fixed activation scales calibrated on training sentences, so batch"
        " mates never change a sentence's scores; dynamic: scales per batch, no calibration data",
    )
    p.add_argument(
        "--calibration-data",
        help="labelled file for static int8 (default: data/gold/train.jsonl, else data/corpus/train.jsonl)",
    )
    p.add_argument(
        "--data-root", help="where stand-off calibration data finds its texts (../shared/datasets)"
    )
    p.add_argument("--calibration-sentences", type=int, help="sentences to calibrate on (default 1000)")
    p.add_argument(
        "--calibration-method", choices=["minmax", "percentile", "entropy"], help="default: minmax"
    )
    p.set_defaults(func=cmd_export)


def _add_batch(sub: Any) -> None:
    p = sub.add_parser("batch", help="label a CSV/JSONL/Parquet file or folder with Spark into Parquet")
    p.add_argument("--model", required=True, help="a model directory, or models:/NAME@ALIAS from MLflow")
    p.add_argument("--input", required=True, help="a .csv, .jsonl or .parquet file, or a folder of them")
    p.add_argument("--output", required=True, help="the Parquet folder to write")
    p.add_argument("--format", choices=["csv", "jsonl", "parquet"], help="default: from the file names")
    p.add_argument("--text-column", default="text")
    for role in ("doc", "idx", "id"):
        p.add_argument(f"--{role}-column", help=f"default: {role!r} when the input has it")
    p.add_argument("--master", help="e.g. local[2], yarn (default: spark-submit's, else local[*])")
    p.add_argument("--backend", choices=["torch", "onnx"], help="default: onnx int8 if exported, else torch")
    p.add_argument("--quantize", choices=["none", "int8"], help="int8 needs --backend onnx")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per Spark task (default 1)")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass (default 64)")
    p.add_argument("--max-chars", type=int, default=2000, help="longer texts get an error (default 2000)")
    p.add_argument("--partitions", type=int, help="scoring tasks (default: 2 x Spark's parallelism)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_batch)


def _add_serve(sub: Any, runtime: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve", parents=[runtime], help="serve the HTTP endpoint (flags override CLAIMLENS_* variables)"
    )
    p.add_argument("--model", help="a model directory (default: $CLAIMLENS_MODEL)")
    p.add_argument(
        "--speakers",
        metavar="DIR",
        help="a speaker model directory for speaker and cue in /v1/analyze (default: "
        "$CLAIMLENS_SPEAKER_MODEL, else none)",
    )
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


def _add_promote(sub: Any) -> None:
    p = sub.add_parser(
        "promote",
        help="point a registry alias at a version if its test macro-F1 beats the alias's current one",
        epilog="exit status: 0 moved (or already there), 1 kept the current version, 2 error",
    )
    p.add_argument("--model", required=True, help="the registered model name, e.g. claimlens-default")
    p.add_argument("--alias", default="champion")
    p.add_argument("--version", help="the candidate version (default: the latest)")
    p.add_argument("--force", action="store_true", help="move the alias whatever the figures say")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.set_defaults(func=cmd_promote)


def build_parser() -> argparse.ArgumentParser:
    """The ``claimlens`` parser: one subcommand per ``_add_*`` function.

    >>> build_parser().parse_args(["analyze", "--model", "models/default", "a.txt"]).format
    'table'
    """
    parser = argparse.ArgumentParser(
        prog="claimlens", description="Label news sentences as claim, denial, official_statement or other."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    runtime = _runtime_options()
    _add_predict(sub, runtime)
    _add_analyze(sub, runtime)
    _add_evaluate(sub, runtime)
    _add_export(sub)
    _add_batch(sub)
    _add_serve(sub, runtime)
    _add_promote(sub)
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

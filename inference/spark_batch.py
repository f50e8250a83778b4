"""``claimlens batch``: label a file or folder of sentences with Spark, locally or on a cluster.

Needs pyspark (``pip install 'claimlens[spark]'``); the rest of ``inference`` imports without it.
Each row keeps its place: a row that cannot be scored (empty text, text over the length limit,
invalid JSON, a document whose ``idx`` is broken) gets a message in the ``error`` column, so the
output has exactly one row per input row. A context model reads each sentence's neighbours
within its document, as many as its window says, found in Spark (one group per document) by
:func:`inference.inputs.context_windows`; rows without a document get no context.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark import SparkFiles
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from inference.backends import ONNX_FILES, check_choice
from inference.inputs import PREVIOUS, Context, Window, context_windows
from inference.labels import LABELS

# Our UDFs hand Spark Arrow batches, never pandas frames: PySpark's pandas-version warning
# does not concern this job.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
GLOBS = {"csv": "*.csv", "jsonl": "*.{jsonl,json}", "parquet": "*.parquet"}
MAX_CHARS = 2_000  # the server's max_sentence_chars: one limit for one sentence everywhere
CORRUPT = "_corrupt_record"  # where Spark's JSON reader keeps a line it could not parse


@dataclass(frozen=True)
class Columns:
    """Input column names. ``text`` must exist; ``doc``/``idx``/``id`` must exist when named,
    and otherwise are used when a column of their default name is there."""

    text: str = "text"
    doc: str | None = None
    idx: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Runtime:
    """What each Python worker loads: the shipped model folder and how to run it."""

    model_name: str  # the folder's name among the job's SparkFiles
    backend: str
    quantize: str
    threads: int = 1
    batch_size: int = 64


@dataclass
class Summary:
    """What a run did: rows read and written, scored, truncated, and errors by kind."""

    rows_in: int
    rows_out: int
    scored: int
    truncated: int
    errors: dict[str, int] = field(default_factory=dict)
    backend: str = ""
    seconds: float = 0.0


def input_format(path: str, given: str | None = None) -> tuple[str, bool]:
    """The input's format (csv, jsonl, parquet) and whether ``path`` is a local folder.

    >>> input_format("data/corpus/test.jsonl")  # doctest: +SKIP
    ('jsonl', False)
    """
    remote = "://" in path and not path.startswith("file://")
    local = Path(path.removeprefix("file://"))
    if not remote and not local.exists():
        raise ValueError(f"input {path} does not exist")
    folder = not remote and local.is_dir()
    if given:
        if given not in GLOBS:
            raise ValueError(f"format must be one of {', '.join(GLOBS)}, got {given!r}")
        return given, folder
    if not folder:
        if local.suffix.lower() not in FORMATS:
            raise ValueError(
                f"cannot tell the format of {path} from its name: give --format csv|jsonl|parquet"
            )
        return FORMATS[local.suffix.lower()], False
    found = {FORMATS[p.suffix.lower()] for p in local.iterdir() if p.suffix.lower() in FORMATS}
    if len(found) != 1:
        what = (
            "no .csv, .jsonl or .parquet files"
            if not found
            else f"files of several formats ({', '.join(sorted(found))})"
        )
        raise ValueError(f"input folder {path} holds {what}: give --format csv|jsonl|parquet")
    return found.pop(), True


def read_input(spark: SparkSession, path: str, fmt: str, folder: bool) -> DataFrame:
    """The input as a DataFrame; in a folder only files of ``fmt``'s extensions are read."""
    reader = spark.read.option("pathGlobFilter", GLOBS[fmt]) if folder else spark.read
    try:
        if fmt == "csv":
            # RFC 4180, as Python's csv writes it: quotes doubled, newlines inside quoted fields.
            return reader.csv(path, header=True, multiLine=True, escape='"', mode="PERMISSIVE")
        if fmt == "jsonl":
            return reader.json(path, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
        return reader.parquet(path)
    except AnalysisException as err:
        raise ValueError(f"cannot read {path}: {err.getMessage()}") from None


def pick_columns(found: list[str], columns: Columns) -> dict[str, str | None]:
    """Each role's input column (None: absent); ``ValueError`` naming a missing one.

    >>> pick_columns(["text", "doc"], Columns())
    {'text': 'text', 'doc': 'doc', 'idx': None, 'id': None}
    """
    shown = ", ".join(c for c in found if c != CORRUPT) or "none"
    chosen: dict[str, str | None] = {}
    for role, given in (
        ("text", columns.text),
        ("doc", columns.doc),
        ("idx", columns.idx),
        ("id", columns.id),
    ):
        name = given or role
        if name in found:
            chosen[role] = name
        elif given:
            raise ValueError(f"the input has no column {name!r} (--{role}-column); columns found: {shown}")
        else:
            chosen[role] = None
    return chosen


def _col(name: str) -> Column:
    return F.col(f"`{name}`")  # backticks: a name with a dot is one column, not a struct field


def prepare(df: DataFrame, chosen: dict[str, str | None]) -> DataFrame:
    """The columns the job works on: ``id`` (generated when absent), ``doc``/``idx`` when
    present, ``_text``, ``_order`` (input order) and ``_bad_json``."""
    text = chosen["text"]
    assert text is not None
    order = F.monotonically_increasing_id()
    parts = [(_col(chosen["id"]) if chosen["id"] else order).alias("id")]
    parts += [_col(name).alias(role) for role in ("doc", "idx") if (name := chosen[role])]
    bad = _col(CORRUPT).isNotNull() if CORRUPT in df.columns else F.lit(False)
    parts += [_col(text).cast("string").alias("_text"), order.alias("_order"), bad.alias("_bad_json")]
    return df.select(*parts)


def _plain(value: object) -> object:
    # A position stored as a float (Parquet, JSON) is still a position when it is whole.
    return int(value) if isinstance(value, float) and value.is_integer() else value


CONTEXT_COLUMNS = ("_context", "_context_after", "_context_error")


def _document_context(table: pa.Table, window: Window) -> pa.Table:
    """One document's rows with ``_context`` and ``_context_after`` (what ``window`` reads
    before and after each sentence, null for none) and ``_context_error``."""
    table = table.take(pc.sort_indices(table, [("_order", "ascending")]))
    n = table.num_rows
    texts = [t or "" for t in table.column("_text").to_pylist()]
    doc = str(table.column("doc")[0].as_py())
    idx = [_plain(v) for v in table.column("idx").to_pylist()] if "idx" in table.column_names else None
    try:
        parts, error = [window.parts(c) for c in context_windows(texts, [doc] * n, idx, window)], None
    except ValueError as err:
        parts, error = [("", "")] * n, f"bad idx: {err}"
    table = table.append_column("_context", pa.array([b or None for b, _ in parts], pa.string()))
    table = table.append_column("_context_after", pa.array([a or None for _, a in parts], pa.string()))
    return table.append_column("_context_error", pa.array([error] * n, pa.string()))


def with_context(rows: DataFrame, window: Window = PREVIOUS) -> DataFrame:
    """``rows`` with each sentence's context in its document as ``window`` reads it (null without a doc)."""
    none = F.lit(None).cast("string")
    if "doc" not in rows.columns:
        return rows.withColumns(dict.fromkeys(CONTEXT_COLUMNS, none))
    schema = T.StructType([*rows.schema.fields, *(T.StructField(c, T.StringType()) for c in CONTEXT_COLUMNS)])
    alone = rows.where(F.col("doc").isNull()).withColumns(dict.fromkeys(CONTEXT_COLUMNS, none))
    grouped = (
        rows.where(F.col("doc").isNotNull())
        .groupBy("doc")
        .applyInArrow(_per_document(window), schema)
    )
    return alone.unionByName(grouped)


def _per_document(window: Window) -> Callable[[pa.Table], pa.Table]:
    # A function of the table alone, with type hints: PySpark 4.3 reads the UDF's kind from
    # them, and fails on a functools.partial (whose hints it cannot read).
    def context(table: pa.Table) -> pa.Table:
        return _document_context(table, window)

    return context


def output_schema(rows: DataFrame) -> T.StructType:
    """``id`` (and ``doc``, ``idx``) as read, then label, score, score_<label>..., truncated, error."""
    kept = [f for f in rows.schema.fields if f.name in ("id", "doc", "idx")]
    return T.StructType(
        [
            *kept,
            T.StructField("label", T.StringType()),
            T.StructField("score", T.DoubleType()),
            *(T.StructField(f"score_{label}", T.DoubleType()) for label in LABELS),
            T.StructField("truncated", T.BooleanType()),
            T.StructField("error", T.StringType()),
        ]
    )


_LOADED: dict[Runtime, Any] = {}


def _classifier(runtime: Runtime) -> Any:
    """The worker's model, loaded on its first batch and kept for the worker's later tasks."""
    if runtime not in _LOADED:
        from inference.predict import Classifier

        _LOADED[runtime] = Classifier.load(
            SparkFiles.get(runtime.model_name),
            batch_size=runtime.batch_size,
            backend=runtime.backend,
            quantize=runtime.quantize,
            threads=runtime.threads,
        )
    return _LOADED[runtime]


def row_error(text: str | None, bad_json: bool, context_error: str | None, max_chars: int) -> str | None:
    """Why a row cannot be scored ("kind: detail" or a bare kind), or None.

    >>> row_error("  ", False, None, 2000)
    'empty text'
    """
    if bad_json:
        return "invalid JSON"
    if context_error:
        return context_error
    if text is None or not text.strip():
        return "empty text"
    if len(text) > max_chars:
        return f"text too long: {len(text)} characters, over the limit of {max_chars}"
    return None


def _score_batches(
    batches: Iterator[pa.RecordBatch], runtime: Runtime, max_chars: int, kept: tuple[str, ...]
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        texts = batch.column("_text").to_pylist()
        after = batch.column("_context_after").to_pylist()
        contexts = [Context.of(b, a) for b, a in zip(batch.column("_context").to_pylist(), after, strict=True)]
        errors = [
            row_error(t, b, e, max_chars)
            for t, b, e in zip(
                texts,
                batch.column("_bad_json").to_pylist(),
                batch.column("_context_error").to_pylist(),
                strict=True,
            )
        ]
        ok = [i for i, e in enumerate(errors) if e is None]
        found = _classifier(runtime).predict([texts[i] for i in ok], [contexts[i] for i in ok]) if ok else []
        n = batch.num_rows
        label: list[str | None] = [None] * n
        truncated: list[bool | None] = [None] * n
        scores: dict[str, list[float | None]] = {name: [None] * n for name in LABELS}
        for i, p in zip(ok, found, strict=True):
            label[i], truncated[i] = p.label, p.truncated
            for name in LABELS:
                scores[name][i] = p.scores[name]
        best = [scores[lab][i] if lab else None for i, lab in enumerate(label)]
        arrays = [batch.column(c) for c in kept] + [
            pa.array(label, pa.string()),
            pa.array(best, pa.float64()),
        ]
        arrays += [pa.array(scores[name], pa.float64()) for name in LABELS]
        arrays += [pa.array(truncated, pa.bool_()), pa.array(errors, pa.string())]
        names = [*kept, "label", "score", *(f"score_{name}" for name in LABELS), "truncated", "error"]
        yield pa.RecordBatch.from_arrays(arrays, names=names)


def score(rows: DataFrame, runtime: Runtime, max_chars: int, partitions: int) -> DataFrame:
    """Label ``rows`` (after :func:`with_context`) on the executors, ``partitions`` tasks at once."""
    schema = output_schema(rows)
    kept = tuple(f.name for f in schema.fields if f.name in ("id", "doc", "idx"))
    # An explicit count: adaptive execution would fold a small input into one task, on one core.
    return rows.repartition(partitions).mapInArrow(
        partial(_score_batches, runtime=runtime, max_chars=max_chars, kept=kept), schema
    )


def choose_runtime(model_dir: Path, backend: str | None, quantize: str | None) -> tuple[str, str]:
    """(backend, quantize): ONNX int8 when the folder has ``model.int8.onnx`` and neither is given.

    >>> choose_runtime(Path("models/quickstart"), None, None)  # doctest: +SKIP
    ('onnx', 'int8')
    """
    if backend is None and quantize is None:
        return ("onnx", "int8") if (model_dir / ONNX_FILES["int8"]).is_file() else ("torch", "none")
    backend = backend or ("onnx" if quantize == "int8" else "torch")
    quantize = quantize or "none"
    check_choice(backend, quantize)
    if backend == "onnx" and not (model_dir / ONNX_FILES[quantize]).is_file():
        flag = " --quantize int8" if quantize == "int8" else ""
        raise ValueError(
            f"{model_dir} has no {ONNX_FILES[quantize]}: run `claimlens export --model {model_dir}{flag}`"
        )
    return backend, quantize


def ship_model(spark: SparkSession, model_dir: Path, backend: str, quantize: str) -> str:
    """Send the model folder to every executor (``SparkContext.addFile``); returns its name there.

    Only the files this run reads travel, under a name of their own (two folders of one name
    would collide in an executor's file cache). The copy stays until this process exits: an
    executor that joins the session later fetches every file the session ever added.
    """
    name = f"claimlens-model-{uuid.uuid4().hex[:12]}"
    unused = {f for q, f in ONNX_FILES.items() if backend != "onnx" or q != quantize}
    scratch = tempfile.mkdtemp(prefix="claimlens-batch-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    staged = Path(scratch) / name
    staged.mkdir()
    for item in model_dir.iterdir():
        if item.is_file() and item.name not in unused:
            shutil.copyfile(item, staged / item.name)
    spark.sparkContext.addFile(str(staged), recursive=True)
    return name


def spark_session(master: str | None) -> SparkSession:
    """A session on ``master`` (default: spark-submit's, else ``local[*]``), ready for Arrow UDFs."""
    from pyspark import SparkConf

    master = master or SparkConf().get("spark.master", "local[*]")
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise ValueError("Spark needs Java 17 or 21: install it, or set JAVA_HOME to its folder")
    builder = SparkSession.builder.appName("claimlens-batch").master(master)
    if master.startswith("local"):
        # Local workers run this interpreter (where torch and claimlens are), not whatever
        # `python3` is first on PATH; on a cluster, spark.pyspark.python says which.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # One machine: driver and executor talk over loopback, and no UI port is opened.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        local = {
            "driver.host": "127.0.0.1",
            "driver.bindAddress": "127.0.0.1",
            "ui.enabled": "false",
            # Workers fork from a daemon that has torch and claimlens imported already.
            "python.daemon.module": "inference.spark_daemon",
        }
        for key, value in local.items():
            builder = builder.config(f"spark.{key}", value)
    for name in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM"):
        builder = builder.config(
            f"spark.executorEnv.{name}", os.environ.get(name, "1" if name == "HF_HUB_OFFLINE" else "false")
        )
    spark = builder.config("spark.ui.showConsoleProgress", "false").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@dataclass(frozen=True)
class BatchJob:
    """One ``claimlens batch`` run."""

    model: str
    input: str
    output: str
    columns: Columns = Columns()
    format: str | None = None
    backend: str | None = None
    quantize: str | None = None
    threads: int = 1
    max_chars: int = MAX_CHARS
    partitions: int | None = None
    overwrite: bool = False
    batch_size: int = 64


def check_job(job: BatchJob) -> tuple[str, bool]:
    """What can be checked before Spark starts: input, output, limits, a local model folder.

    Returns the input's format and whether it is a folder (see :func:`input_format`).
    """
    from inference.model import check_model_dir
    from inference.registry import parse_model_uri

    if job.model.startswith("models:/"):
        parse_model_uri(job.model)
    else:
        check_model_dir(Path(job.model))
        choose_runtime(Path(job.model), job.backend, job.quantize)
    fmt, folder = input_format(job.input, job.format)
    if not job.overwrite and "://" not in job.output and Path(job.output).exists():
        raise ValueError(f"output {job.output} exists: remove it, or give --overwrite")
    if min(job.max_chars, job.threads, job.batch_size, job.partitions or 1) < 1:
        raise ValueError("--max-chars, --threads, --batch-size and --partitions must be at least 1")
    return fmt, folder


def run_batch(spark: SparkSession, job: BatchJob) -> Summary:
    """Label ``job.input`` into Parquet at ``job.output``; bad rows are kept with an error.

    >>> run_batch(spark, BatchJob("models/quickstart", "in.jsonl", "out.parquet")).rows_out  # doctest: +SKIP
    494
    """
    from inference.model import check_model_dir, read_info
    from inference.registry import resolve_model

    start = time.perf_counter()
    fmt, folder = check_job(job)
    model_dir = resolve_model(job.model)  # a models:/ URI is downloaded here, on the driver
    check_model_dir(model_dir)
    backend, quantize = choose_runtime(model_dir, job.backend, job.quantize)
    df = read_input(spark, job.input, fmt, folder)
    chosen = pick_columns(df.columns, job.columns)
    info = read_info(model_dir)
    if info.context and chosen["doc"] is None:
        print("note: the input has no doc column: every sentence is read without context", file=sys.stderr)
    shipped = ship_model(spark, model_dir, backend, quantize)
    runtime = Runtime(shipped, backend, quantize, job.threads, job.batch_size)
    rows = with_context(prepare(df, chosen), info.window)
    partitions = job.partitions or 2 * spark.sparkContext.defaultParallelism
    out = score(rows, runtime, job.max_chars, partitions)
    try:
        out.write.mode("overwrite" if job.overwrite else "errorifexists").parquet(job.output)
    except AnalysisException as err:
        raise ValueError(f"cannot write {job.output}: {err.getMessage()}") from None
    summary = summarize(spark.read.parquet(job.output), df.count())
    summary.backend = f"{backend}" + (f" {quantize}" if quantize != "none" else "")
    summary.seconds = time.perf_counter() - start
    return summary


def summarize(written: DataFrame, rows_in: int) -> Summary:
    """Counts over the written output (read back, in one pass: the scoring is not run twice)."""
    kind = F.when(F.col("error").isNotNull(), F.substring_index("error", ":", 1))
    groups = written.groupBy(kind.alias("kind")).agg(
        F.count(F.lit(1)).alias("rows"),
        F.count("label").alias("scored"),
        F.coalesce(F.sum(F.col("truncated").cast("int")), F.lit(0)).alias("truncated"),
    )
    found = groups.collect()
    errors = {row["kind"]: int(row["rows"]) for row in found if row["kind"] is not None}
    return Summary(
        rows_in,
        sum(int(row["rows"]) for row in found),
        sum(int(row["scored"]) for row in found),
        sum(int(row["truncated"]) for row in found),
        dict(sorted(errors.items())),
    )

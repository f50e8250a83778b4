"""`claimlens batch` on Spark (local[2]): the same labels and scores as the library, one output
row per input row, bad rows kept with an error, every input format, clear errors before work.

Marked `spark` (run with `make test-spark`): pyspark is an optional extra, imported only here.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inference.inputs import previous_sentences
from inference.labels import LABELS
from inference.predict import Classifier, Prediction
from tests.conftest import ROOT

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("claimlens-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        # As `claimlens batch` on a local master: workers fork from a daemon with torch imported.
        .config("spark.python.daemon.module", "inference.spark_daemon")
        # Short jobs: the JIT's first tier alone halves the JVM's CPU time (measured: 25 s vs 46 s).
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    """The corpus test split with ids, shuffled: reading order must come from doc and idx."""
    lines = (ROOT / "data/corpus/test.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [{"id": i, **json.loads(line)} for i, line in enumerate(lines) if line.strip()]
    for row in rows:
        row.pop("label", None)
    random.Random(0).shuffle(rows)
    return rows


def expected(model_dir: Path, rows: list[dict], **load: object) -> dict[object, Prediction]:
    """What the library says for ``rows``, each read with the model's own window: the reference
    every Spark output is held to."""
    texts = [r["text"] for r in rows]
    clf = Classifier.load(model_dir, **load)  # type: ignore[arg-type]
    found = clf.predict(texts, clf.contexts(texts, [r.get("doc") for r in rows], [r.get("idx") for r in rows]))
    return {r["id"]: p for r, p in zip(rows, found, strict=True)}


def read_output(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def assert_same(out: list[dict], want: dict[object, Prediction]) -> None:
    assert len(out) == len(want)
    assert {str(r["id"]) for r in out} == {str(k) for k in want}
    by_id = {str(k): v for k, v in want.items()}
    for row in out:
        p = by_id[str(row["id"])]
        assert row["error"] is None, row
        assert (row["label"], row["truncated"]) == (p.label, p.truncated), row
        assert row["score"] == pytest.approx(p.score, abs=1e-6)
        for label in LABELS:
            assert row[f"score_{label}"] == pytest.approx(p.scores[label], abs=1e-6), (row, label)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def job(model: Path | str, src: Path, out: Path, **kw: object):
    from inference.spark_batch import BatchJob

    return BatchJob(str(model), str(src), str(out), **kw)  # type: ignore[arg-type]


def test_every_label_and_score_matches_the_library_with_context(
    spark, corpus, sharp_context_model_dir, tmp_path
):
    from inference.spark_batch import run_batch

    assert len(corpus) >= 300
    want = expected(sharp_context_model_dir, corpus)
    # The context must matter for this model, or a job that dropped it would pass too.
    alone = Classifier.load(sharp_context_model_dir).predict([r["text"] for r in corpus])
    changed = sum(
        p.scores != pytest.approx(want[r["id"]].scores, abs=1e-4) for r, p in zip(corpus, alone, strict=True)
    )
    assert changed >= 10, changed

    out = tmp_path / "out.parquet"
    summary = run_batch(spark, job(sharp_context_model_dir, write_jsonl(tmp_path / "in.jsonl", corpus), out))
    rows = read_output(out)
    assert_same(rows, want)
    assert (summary.rows_in, summary.rows_out, summary.scored) == (len(corpus),) * 3
    assert summary.errors == {} and summary.backend == "torch"
    assert summary.truncated == sum(p.truncated for p in want.values()) > 0
    assert {(r["id"], r["doc"], r["idx"]) for r in rows} == {(r["id"], r["doc"], r["idx"]) for r in corpus}


def test_a_window_model_reads_its_window_per_document(spark, corpus, sharp_window_model_dir, tmp_path):
    from inference.spark_batch import run_batch

    docs = sorted({r["doc"] for r in corpus})[:12]
    rows = [r for r in corpus if r["doc"] in docs]  # whole documents, still in shuffled order
    want = expected(sharp_window_model_dir, rows)
    # The window must matter beyond the previous sentence, or a job that read one would pass too.
    texts = [r["text"] for r in rows]
    previous = previous_sentences(texts, [r["doc"] for r in rows], [r["idx"] for r in rows])
    one = Classifier.load(sharp_window_model_dir).predict(texts, previous)
    assert sum(p.scores != pytest.approx(want[r["id"]].scores, abs=1e-4) for r, p in zip(rows, one, strict=True)) >= 5

    out = tmp_path / "out.parquet"
    summary = run_batch(spark, job(sharp_window_model_dir, write_jsonl(tmp_path / "in.jsonl", rows), out))
    assert_same(read_output(out), want)
    assert summary.scored == len(rows) and summary.errors == {}


def test_csv_parquet_and_a_folder_of_jsonl_give_the_same_results(
    spark, corpus, sharp_context_model_dir, tmp_path
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from inference.spark_batch import run_batch

    rows = corpus[:150]
    rows[0] = rows[0] | {"text": 'He said: "we will, in time,\nreturn", officials said.'}
    want = expected(sharp_context_model_dir, rows)
    with (tmp_path / "in.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "doc", "idx", "text"])
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    folder = tmp_path / "parts"
    folder.mkdir()
    # Alternate rows across two files: a document's sentences are split between them.
    write_jsonl(folder / "a.jsonl", rows[::2])
    write_jsonl(folder / "b.jsonl", rows[1::2])
    (folder / "README.txt").write_text("not input\n")
    for name, src in (("csv", tmp_path / "in.csv"), ("parquet", tmp_path / "in.parquet"), ("folder", folder)):
        out = tmp_path / f"out-{name}"
        assert run_batch(spark, job(sharp_context_model_dir, src, out)).rows_out == len(rows), name
        assert_same(read_output(out), want)


def test_bad_rows_are_kept_with_an_error_and_counted(spark, corpus, sharp_context_model_dir, tmp_path):
    from inference.spark_batch import run_batch

    good = corpus[:40]
    bad = [
        {"id": "empty", "doc": "x", "idx": 0, "text": ""},
        {"id": "blank", "doc": "x", "idx": 1, "text": "   "},
        {"id": "null", "doc": "x", "idx": 2, "text": None},
        {"id": "long", "doc": "y", "idx": 0, "text": "word " * 500},
        {"id": "dup1", "doc": "z", "idx": 0, "text": "Police said it."},
        {"id": "dup2", "doc": "z", "idx": 0, "text": "Rebels denied it."},
        {"id": "nodoc", "text": "The ministry denied the report."},
    ]
    lines = [json.dumps(r) for r in good + bad]
    lines.insert(7, '{"id": "broken", "text": ')  # a line that is not JSON
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    summary = run_batch(spark, job(sharp_context_model_dir, src, out))

    rows = {str(r["id"]): r for r in read_output(out)}
    assert summary.rows_in == summary.rows_out == len(rows) == len(good) + len(bad) + 1
    errors = {k: r["error"] for k, r in rows.items() if r["error"]}
    assert set(errors) == {
        "empty",
        "blank",
        "null",
        "long",
        "dup1",
        "dup2",
        "None",
    }  # the broken line has no id
    assert errors["long"] == "text too long: 2500 characters, over the limit of 2000"
    assert errors["None"] == "invalid JSON"
    assert errors["dup1"].startswith("bad idx: document 'z': the same idx appears twice")
    assert all(rows[k]["label"] is None and rows[k]["score"] is None for k in errors)
    assert summary.errors == {"bad idx": 2, "empty text": 3, "invalid JSON": 1, "text too long": 1}
    assert summary.scored == len(good) + 1
    # A row without a doc is read alone; the good rows score as they do on their own.
    lone = Classifier.load(sharp_context_model_dir).predict(["The ministry denied the report."])[0]
    assert rows["nodoc"]["score"] == pytest.approx(lone.score, abs=1e-6)
    assert_same([rows[str(r["id"])] for r in good], expected(sharp_context_model_dir, good))


def test_a_limit_of_our_own_and_an_input_without_doc_idx_or_id(spark, sharp_context_model_dir, tmp_path):
    from inference.spark_batch import run_batch

    texts = ["Police said three men were arrested.", "Rebels claimed the attack on the town."]
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    summary = run_batch(spark, job(sharp_context_model_dir, src, tmp_path / "out", max_chars=37))
    rows = read_output(tmp_path / "out")
    assert set(rows[0]) == {"id", "label", "score", *(f"score_{x}" for x in LABELS), "truncated", "error"}
    assert len({r["id"] for r in rows}) == 2 and summary.errors == {"text too long": 1}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--doc-column", "document"],
            "no column 'document' (--doc-column); columns found: doc, id, idx, text",
        ),
        (
            ["--text-column", "sentence"],
            "no column 'sentence' (--text-column); columns found: doc, id, idx, text",
        ),
    ],
)
def test_a_missing_column_is_exit_2_naming_it_before_any_work(
    spark, corpus, sharp_context_model_dir, tmp_path, capsys, extra, message
):
    from inference.cli import main

    src = write_jsonl(tmp_path / "in.jsonl", corpus[:5])
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "batch",
                "--model",
                str(sharp_context_model_dir),
                "--input",
                str(src),
                "--output",
                str(out),
                *extra,
            ]
        )
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_input_existing_output_and_unknown_format_are_exit_2(
    sharp_context_model_dir, tmp_path, capsys
):
    from inference.cli import main

    base = ["batch", "--model", str(sharp_context_model_dir)]
    (tmp_path / "taken").mkdir()
    (tmp_path / "in.txt").write_text("x\n")
    write_jsonl(tmp_path / "in.jsonl", [{"text": "Police said it."}])
    cases = [
        (["--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")], "does not exist"),
        (["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "taken")], "exists"),
        (["--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o")], "give --format"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main([*base, *args])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


def test_the_onnx_int8_path_is_the_default_where_exported(spark, corpus, sharp_context_model_dir, tmp_path):
    from inference.export import export_onnx
    from inference.spark_batch import run_batch

    model_dir = tmp_path / "unit-context"
    shutil.copytree(sharp_context_model_dir, model_dir)
    export_onnx(model_dir, quantize="int8")
    rows = corpus[:100]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    # Dynamic int8 quantises each batch's activations with that batch's own scale, so a score
    # moves with its batch mates (by up to 0.02 on this sharp model): one sentence per batch,
    # on both sides, makes the comparison exact.
    summary = run_batch(spark, job(model_dir, src, tmp_path / "out", batch_size=1))
    assert summary.backend == "onnx int8"
    int8 = expected(model_dir, rows, backend="onnx", quantize="int8", batch_size=1, threads=1)
    assert_same(read_output(tmp_path / "out"), int8)
    torch_ = expected(model_dir, rows)
    assert any(abs(int8[k].scores["claim"] - torch_[k].scores["claim"]) > 1e-4 for k in int8)
    summary = run_batch(spark, job(model_dir, src, tmp_path / "out", backend="torch", overwrite=True))
    assert summary.backend == "torch"
    assert_same(read_output(tmp_path / "out"), torch_)


def test_a_registered_mlflow_model_is_fetched_by_alias(
    spark, corpus, sharp_context_model_dir, tmp_path, monkeypatch
):
    import mlflow
    from mlflow import MlflowClient

    from inference.spark_batch import run_batch

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CLAIMLENS_MODEL_CACHE", str(tmp_path / "cache"))
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ROOT / "inference/mlflow_model.py"),
            artifacts={"model_dir": str(sharp_context_model_dir)},
            pip_requirements=[],
            registered_model_name="claimlens-spark-test",
        )
    MlflowClient().set_registered_model_alias("claimlens-spark-test", "champion", "1")
    rows = corpus[:60]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    run_batch(spark, job("models:/claimlens-spark-test@champion", src, tmp_path / "out"))
    assert_same(read_output(tmp_path / "out"), expected(sharp_context_model_dir, rows))
    with pytest.raises(ValueError, match="has no alias 'nobody'"):
        run_batch(spark, job("models:/claimlens-spark-test@nobody", src, tmp_path / "out2"))


def test_spark_submit_runs_the_job_as_the_readme_says(corpus, sharp_context_model_dir, tmp_path):
    # A fresh JVM through spark-submit and the entry script, as on a cluster (with local[2]).
    src = write_jsonl(tmp_path / "in.jsonl", corpus[:30])
    out = tmp_path / "out"
    spark_submit = Path(sys.executable).parent / "spark-submit"
    command = [str(spark_submit), "--master", "local[2]", "--driver-java-options", "-XX:TieredStopAtLevel=1"]
    command += [str(ROOT / "inference/spark_submit.py"), "--model", str(sharp_context_model_dir)]
    command += ["--input", str(src), "--output", str(out)]
    env = os.environ | {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env | {"SPARK_LOCAL_IP": "127.0.0.1"},
    )
    # spark-submit passes the Python driver's stderr on through its own stdout.
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-3000:]
    assert "30 rows in, 30 rows out" in said and "30 scored" in said, said[-3000:]
    assert_same(read_output(out), expected(sharp_context_model_dir, corpus[:30]))

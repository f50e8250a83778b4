"""`claimlens evaluate --report`: Markdown and HTML reports, MLflow runs, and progress with rate and ETA."""

import json
import re
from pathlib import Path

import pytest

from inference.cli import main
from inference.labels import LABELS
from tests.conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"
BAR = re.compile(r"\d+/\d+ \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?sentence/s\]")  # done/total [elapsed<ETA, rate]


@pytest.fixture()
def data(tmp_path):
    lines = (ROOT / "data" / "corpus" / "dev.jsonl").read_text().splitlines(keepends=True)[:60]
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(lines))
    return path


def evaluate(capsys, *args) -> tuple[str, str]:
    assert main(["evaluate", *map(str, args)]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_markdown_report_has_the_matrix_and_its_images_beside_it(tiny_model_dir, data, tmp_path, capsys):
    report = tmp_path / "out" / "report.md"
    report.parent.mkdir()
    evaluate(
        capsys, "--model", tiny_model_dir, "--data", data, "--report", report, "--json", tmp_path / "m.json"
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    text = report.read_text()
    assert f"| gold \\ predicted | {' | '.join(LABELS)} |" in text
    for label, row in zip(LABELS, metrics["confusion_matrix"], strict=True):
        assert f"| {label} | {' | '.join(map(str, row))} |" in text
    assert f"**macro-F1**: {metrics['macro_f1']:.4f}" in text
    assert f"**ECE**: {metrics['calibration']['ece']:.4f}" in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(images) == [
        "report_confusion_matrix.png",
        "report_per_class_f1.png",
        "report_reliability.png",
    ]
    for name in images:
        assert (report.parent / name).read_bytes().startswith(PNG)
    assert sorted(p.name for p in report.parent.iterdir()) == sorted(["report.md", *images])


def test_html_report_is_one_file_with_the_images_inside(tiny_model_dir, data, tmp_path, capsys):
    report = tmp_path / "report.html"
    evaluate(capsys, "--model", tiny_model_dir, "--data", data, "--report", report)
    text = report.read_text()
    assert text.count('src="data:image/png;base64,iVBORw0KGgo') == 3  # base64 of the PNG signature
    assert "<th>gold \\ predicted</th>" in text and "<td>official_statement</td>" in text
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".png"] == []


def test_log_to_mlflow_makes_a_run_in_claimlens_eval(tiny_model_dir, data, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the store's default artifact root is ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    report = tmp_path / "report.md"
    args = ("--model", tiny_model_dir, "--data", data, "--report", report, "--json", tmp_path / "m.json")
    _, err = evaluate(capsys, *args, "--log-to-mlflow", "--tracking-uri", uri)
    run_id = re.search(r"logged the report to MLflow run (\w+)", err).group(1)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "claimlens-eval"
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert run.data.metrics["eval_macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert run.data.metrics["eval_ece"] == pytest.approx(metrics["calibration"]["ece"])
    logged = sorted(a.path for a in client.list_artifacts(run_id, "evaluation"))
    assert logged == [
        "evaluation/report.md",
        "evaluation/report_confusion_matrix.png",
        "evaluation/report_per_class_f1.png",
        "evaluation/report_reliability.png",
    ]
    copy = client.download_artifacts(run_id, "evaluation/report.md", str(tmp_path / "down"))
    assert Path(copy).read_text() == report.read_text()


def test_mlflow_run_adds_the_report_to_an_existing_run(tiny_model_dir, data, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("training")).info.run_id
    client.set_terminated(run_id, "FINISHED")
    report = tmp_path / "report.html"
    evaluate(
        capsys,
        "--model",
        tiny_model_dir,
        "--data",
        data,
        "--report",
        report,
        "--mlflow-run",
        run_id,
        "--tracking-uri",
        uri,
    )
    assert [a.path for a in client.list_artifacts(run_id, "evaluation")] == ["evaluation/report.html"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "eval_accuracy" in run.data.metrics
    assert client.get_experiment_by_name("claimlens-eval") is None
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--report", str(report),
              "--mlflow-run", "0" * 32, "--tracking-uri", uri])  # fmt: skip
    assert exit_.value.code == 2 and "cannot log the report to MLflow" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--report", "report.txt"], "report must end in .md or .html"),
        (["--report", "no/such/folder/report.md"], "report folder no/such/folder does not exist"),
        (["--log-to-mlflow"], "give --report FILE.md or FILE.html"),
    ],
)
def test_bad_report_options_fail_before_predicting(tiny_model_dir, tmp_path, capsys, extra, message):
    missing = tmp_path / "never-read.jsonl"  # a clear report error comes first, not this one
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--model", str(tiny_model_dir), "--data", str(missing), *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_progress_shows_rate_and_eta_only_when_asked_off_a_terminal(tiny_model_dir, data, tmp_path, capsys):
    _, quiet = evaluate(capsys, "--model", tiny_model_dir, "--data", data)
    assert not BAR.search(quiet)  # stderr is not a terminal here
    _, shown = evaluate(capsys, "--model", tiny_model_dir, "--data", data, "--progress")
    assert BAR.search(shown) and "60/60" in shown
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["Police said so.", "It rained."]))
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(rows), "--progress"]) == 0
    assert BAR.search(capsys.readouterr().err)
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(rows)]) == 0
    assert not BAR.search(capsys.readouterr().err)

"""configs/tiny.yaml trained for real into a temporary MLflow store, then checked from the outside."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inference.labels import LABELS
from inference.predict import Classifier
from tests.conftest import train_cli

SENTENCES = ["The army denied the report.", "Rebels said they took the town.", "The city is old."]


def test_model_directory_is_complete(trained):
    model_dir = trained["model_dir"]
    names = {p.name for p in model_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "train_config.yaml",
        "metrics.json",
        "tokenizer.json",
    } <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    config = json.loads((model_dir / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(4)] == list(LABELS)
    resolved = yaml.safe_load((model_dir / "train_config.yaml").read_text())
    assert resolved["name"] == "tiny" and resolved["tracking"]["uri"] == trained["uri"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and 1 <= metrics["best_epoch"] <= 2
    assert metrics["dev"]["macro_f1"] == max(h["dev_macro_f1"] for h in metrics["history"])
    assert set(metrics["test"]["per_class"]) == set(LABELS)
    assert metrics["data"]["sizes"] == {"train": 400, "dev": 80, "test": 80}
    # No staging directories are left beside it.
    assert [p.name for p in model_dir.parent.iterdir()] == ["tiny"]


def test_mlflow_run_has_params_metrics_artifacts_and_registered_model(trained):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=trained["uri"])
    experiment = client.get_experiment_by_name("claimlens-tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.base"] == "tiny-random"
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["data_size_train"] == "400"
    assert run.data.tags["mlflow.source.git.commit"]
    for name in (
        "dev_macro_f1",
        "dev_f1_denial",
        "train_loss",
        "test_macro_f1",
        "test_f1_official_statement",
    ):
        assert name in run.data.metrics, name
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev_macro_f1")] == [1, 2]
    artifacts = set()
    for folder in ("", "reports", "data"):
        artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, folder or None)}
    assert {
        "train_config.yaml",
        "reports/dev_confusion_matrix.png",
        "reports/test_confusion_matrix.png",
        "reports/test_classification_report.txt",
        "data/label_counts.json",
    } <= artifacts
    png = client.download_artifacts(
        run.info.run_id, "reports/test_confusion_matrix.png", str(trained["work"])
    )
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    versions = client.search_model_versions("name='claimlens-tiny'")
    assert [v.run_id for v in versions] == [run.info.run_id]


def test_mlflow_model_reloads_offline_and_agrees_with_the_directory(trained):
    code = f"""
import json, mlflow, pandas as pd
mlflow.set_tracking_uri({trained["uri"]!r})
model = mlflow.pyfunc.load_model("models:/claimlens-tiny/1")
out = model.predict(pd.DataFrame({{"text": {SENTENCES!r}}}))
print(json.dumps(out.to_dict(orient="records")))
"""
    # A fresh interpreter in another directory: only the logged model can make this work.
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=trained["work"].parent,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    direct = Classifier.load(trained["model_dir"]).predict(SENTENCES)
    assert [r["label"] for r in rows] == [p.label for p in direct]
    for row, p in zip(rows, direct, strict=True):
        assert row["score"] == pytest.approx(p.score, abs=1e-5)
        assert row["score_denial"] == pytest.approx(p.scores["denial"], abs=1e-5)


def test_same_config_and_seed_give_the_same_metrics(trained, tmp_path):
    proc = train_cli(tmp_path, "tiny", "tracking.enabled=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = json.loads((trained["model_dir"] / "metrics.json").read_text())
    again = json.loads((tmp_path / "models" / "tiny" / "metrics.json").read_text())
    assert again["dev"] == first["dev"] and again["test"] == first["test"]
    assert [h["train_loss"] for h in again["history"]] == [h["train_loss"] for h in first["history"]]


def test_a_failing_run_is_marked_failed(tmp_path):
    from mlflow.tracking import MlflowClient

    (tmp_path / "train.jsonl").write_text(
        json.dumps({"text": "Police said so.", "label": "official_statement"}) + "\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = train_cli(tmp_path, "tiny", f"tracking.uri={uri}", "tracking.experiment=broken", link_data=False)
    assert proc.returncode == 2
    assert re.search(r"data file data/corpus/\w+\.jsonl does not exist", proc.stderr)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not (tmp_path / "models").exists()


def test_train_cli_rejects_bad_config_without_a_traceback(tmp_path):
    proc = train_cli(tmp_path, "tiny", "train.epochz=1", link_data=False, timeout=120)
    assert proc.returncode == 2
    assert "train.epochz" in proc.stderr and "Traceback" not in proc.stderr


def test_log_model_off_logs_the_run_but_no_model(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = train_cli(tmp_path, "tiny", f"tracking.uri={uri}", "tracking.log_model=false", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("claimlens-tiny").experiment_id])
    assert run.info.status == "FINISHED" and "test_macro_f1" in run.data.metrics
    assert client.search_model_versions("name='claimlens-tiny'") == []

"""Temperature scaling: ECE, the fit, the folder's temperature, labels unchanged, the training hook."""

import json
import shutil

import numpy as np
import pytest

from inference.calibration import expected_calibration_error, reliability, softmax
from inference.model import check_temperature, read_info
from inference.predict import Classifier
from inference.records import read_labelled
from tests.conftest import ROOT
from training.calibrate import main as calibrate_main
from training.calibration import fit_temperature, held_out_logits, write_temperature

CORPUS_DEV = ROOT / "data" / "corpus" / "dev.jsonl"


@pytest.fixture(scope="module")
def corpus():
    return read_labelled(CORPUS_DEV)[:400]


@pytest.fixture()
def sharp_copy(sharp_context_model_dir, tmp_path):
    target = tmp_path / "sharp"
    shutil.copytree(sharp_context_model_dir, target)
    return target


def test_ece_by_hand():
    # Two examples at 0.9, one right one wrong: |0.5 - 0.9| = 0.4.
    assert expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1])) == pytest.approx(
        0.4
    )
    # Right at the confidence it claims in each bin: 0.
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    assert expected_calibration_error(probs, np.array([0, 0, 1])) == pytest.approx(0.0)
    bins = reliability(np.array([[1 / 15, 14 / 15], [0.2, 0.8]]), np.array([1, 0]))
    assert len(bins) == 15 and sum(b.count for b in bins) == 2
    assert bins[13].count == 1 and bins[11].count == 1  # (13/15, 14/15] and (11/15, 12/15]
    with pytest.raises(ValueError, match="one row of scores per gold label"):
        expected_calibration_error(np.zeros((2, 4)), np.array([0]))


def test_fit_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(20000, 4))
    probs = softmax(logits, 2.5)
    gold = np.array([rng.choice(4, p=row) for row in probs])
    assert fit_temperature(logits, gold) == pytest.approx(2.5, rel=0.05)
    assert fit_temperature(logits / 2.5, gold) == pytest.approx(1.0, rel=0.05)


def test_temperature_lowers_ece_on_held_out_data_of_an_over_confident_model(sharp_context_model_dir, corpus):
    logits, gold = held_out_logits(Classifier.load(sharp_context_model_dir), corpus)
    fit, held = slice(0, 200), slice(200, 400)
    temperature = fit_temperature(logits[fit], gold[fit])
    before = expected_calibration_error(softmax(logits[held]), gold[held])
    after = expected_calibration_error(softmax(logits[held], temperature), gold[held])
    assert temperature > 1  # the sharpened model is over-confident, so T softens it
    assert before > 0.15 and after < before / 2


def test_calibrated_scores_keep_every_label(sharp_context_model_dir, sharp_copy, corpus):
    texts, contexts = [e.text for e in corpus], [e.context for e in corpus]
    raw = Classifier.load(sharp_context_model_dir).predict(texts, contexts)
    write_temperature(sharp_copy, 7.5)
    clf = Classifier.load(sharp_copy)
    assert clf.temperature == 7.5 and read_info(sharp_copy).temperature == 7.5
    calibrated = clf.predict(texts, contexts)
    assert [p.label for p in calibrated] == [p.label for p in raw]
    assert all(p.score == max(p.scores.values()) for p in calibrated)
    assert all(c.score < r.score for c, r in zip(calibrated, raw, strict=True))
    expected = softmax(clf.logits(texts[:5], contexts[:5]), 7.5)
    np.testing.assert_allclose([list(p.scores.values()) for p in calibrated[:5]], expected, atol=1e-6)


def test_a_folder_without_temperature_scores_at_t_1(tiny_model_dir):
    clf = Classifier.load(tiny_model_dir)
    assert "temperature" not in json.loads((tiny_model_dir / "config.json").read_text())["claimlens"]
    assert clf.temperature == 1.0
    text = "Police said three men were arrested."
    scores = clf.predict([text])[0].scores
    assert list(scores.values()) == pytest.approx(softmax(clf.logits([text]))[0].tolist(), abs=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_a_bad_temperature_is_refused_with_where_it_came_from(sharp_copy, bad):
    with pytest.raises(ValueError, match="finite number above 0"):
        check_temperature(bad)
    config = json.loads((sharp_copy / "config.json").read_text())
    config["claimlens"]["temperature"] = bad
    (sharp_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json: claimlens\.temperature"):
        read_info(sharp_copy)


def test_calibrate_command_writes_only_the_temperature(sharp_copy, tmp_path, capsys):
    before = json.loads((sharp_copy / "config.json").read_text())
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(line for line in CORPUS_DEV.read_text().splitlines(keepends=True)[:200]))
    assert calibrate_main(["--model", str(sharp_copy), "--data", str(dev), "--dry-run"]) == 0
    assert json.loads((sharp_copy / "config.json").read_text()) == before
    assert calibrate_main(["--model", str(sharp_copy), "--data", str(dev), "--test", str(CORPUS_DEV)]) == 0
    out = capsys.readouterr().out
    after = json.loads((sharp_copy / "config.json").read_text())
    temperature = after["claimlens"].pop("temperature")
    assert after == before and temperature > 1
    assert f"temperature {temperature:.4f}" in out and "test_ece_uncalibrated" in out
    assert not [p.name for p in sharp_copy.iterdir() if p.name.startswith(".config.json")]


def test_calibrate_command_bad_data_is_a_clear_error(sharp_copy, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        calibrate_main(["--model", str(sharp_copy), "--data", str(tmp_path / "missing.jsonl")])
    assert exit_.value.code == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_training_fits_t_on_dev_and_reports_test_ece(trained):
    from mlflow.tracking import MlflowClient

    model_dir = trained["model_dir"]
    temperature = json.loads((model_dir / "config.json").read_text())["claimlens"]["temperature"]
    calibration = json.loads((model_dir / "metrics.json").read_text())["calibration"]
    assert calibration["temperature"] == temperature == Classifier.load(model_dir).temperature
    assert calibration["fitted_on"] == "dev" and calibration["bins"] == 15
    assert calibration["dev_nll"] <= calibration["dev_nll_uncalibrated"]
    assert 0 <= calibration["test_ece"] <= 1 and 0 <= calibration["test_ece_uncalibrated"] <= 1
    client = MlflowClient(tracking_uri=trained["uri"])
    run = client.search_runs([client.get_experiment_by_name("claimlens-tiny").experiment_id])[0]
    assert run.data.metrics["test_ece"] == pytest.approx(calibration["test_ece"])
    assert run.data.metrics["test_ece_uncalibrated"] == pytest.approx(calibration["test_ece_uncalibrated"])
    assert run.data.metrics["temperature"] == pytest.approx(temperature)
    assert "reports/reliability_test.png" in [
        a.path for a in client.list_artifacts(run.info.run_id, "reports")
    ]


def test_cli_http_and_pyfunc_serve_the_calibrated_scores(sharp_copy, capsys):
    from types import SimpleNamespace

    import pandas as pd
    from fastapi.testclient import TestClient

    from inference.app import create_app
    from inference.cli import main
    from inference.mlflow_model import ClaimLensModel
    from inference.settings import Settings

    texts = ["Police said three men were arrested.", "The ministry denied the report."]
    raw = Classifier.load(sharp_copy).predict(texts)
    write_temperature(sharp_copy, 4.0)
    want = Classifier.load(sharp_copy).predict(texts)
    assert all(w.scores != pytest.approx(r.scores, abs=1e-3) for w, r in zip(want, raw, strict=True))
    assert main(["predict", "--model", str(sharp_copy), *texts]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    with TestClient(create_app(Settings(model_dir=str(sharp_copy)))) as client:
        http = client.post("/v1/classify", json={"sentences": texts}).json()["predictions"]
    pyfunc = ClaimLensModel()
    pyfunc.load_context(SimpleNamespace(artifacts={"model_dir": str(sharp_copy)}))
    frame = pyfunc.predict(None, pd.DataFrame({"text": texts}))
    for i, w in enumerate(want):
        assert cli[i]["scores"] == pytest.approx(w.scores, abs=1e-6)
        assert http[i]["scores"] == pytest.approx(w.scores, abs=1e-6)
        assert {k: frame[f"score_{k}"][i] for k in w.scores} == pytest.approx(w.scores, abs=1e-6)
        assert cli[i]["label"] == http[i]["label"] == frame["label"][i] == w.label == raw[i].label

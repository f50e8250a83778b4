"""Per-epoch checkpoints and ``claimlens-train --resume``: a killed training ends as if never stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import load_file

from inference.model import check_model_dir
from tests.conftest import ROOT, train_cli
from training.checkpoint import latest_checkpoint
from training.cli import main

TINY = str(ROOT / "configs" / "tiny.yaml")
CHECKPOINTS = Path("models") / ".checkpoints" / "tiny"


def start_training(cwd: Path, *overrides: str) -> subprocess.Popen[bytes]:
    """``python -m training`` on configs/tiny.yaml in the background, output to files in ``cwd``."""
    (cwd / "data").symlink_to(ROOT / "data")
    with (cwd / "stdout.txt").open("wb") as out, (cwd / "stderr.txt").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "training", "--config", TINY, *overrides],
            cwd=cwd,
            stdout=out,
            stderr=err,
            # Unbuffered, so the "epoch N:" lines show up in stdout.txt as they are printed.
            env=os.environ | {"MLFLOW_TRACKING_URI": "", "PYTHONUNBUFFERED": "1"},
        )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def printed(cwd: Path, text: str) -> Callable[[], bool]:
    return lambda: text in (cwd / "stdout.txt").read_text()


def mlflow_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name("claimlens-tiny").experiment_id])


def resume_in_process(cwd: Path, monkeypatch, capsys, *overrides: str) -> tuple[int, str]:
    """``claimlens-train --resume`` run here: the refusals need no subprocess (they stop before torch work)."""
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", TINY, "--resume", *overrides])
    return int(exit_info.value.code or 0), capsys.readouterr().err


EPOCHS = 3  # killed after the first checkpoint, so the resumed run always has epochs left to train


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """configs/tiny.yaml for ``EPOCHS`` epochs, never stopped: what a resumed run must end as."""
    work = tmp_path_factory.mktemp("uninterrupted")
    proc = train_cli(work, "tiny", f"train.epochs={EPOCHS}", "tracking.enabled=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return work / "models" / "tiny"


def test_killed_training_resumes_to_the_same_metrics_weights_and_mlflow_run(
    uninterrupted, tmp_path, monkeypatch, capsys
):
    """Killed after a checkpoint, resumed: metrics and weights match a run that was never stopped."""
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    work = tmp_path / "killed"
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    # The same config and seed as ``uninterrupted``; only tracking differs, which changes no number.
    overrides = (f"train.epochs={EPOCHS}", f"tracking.uri={uri}", "tracking.log_model=false")
    proc = start_training(work, *overrides)
    wait_for(lambda: latest_checkpoint(work / CHECKPOINTS) is not None, proc, "the first checkpoint")
    proc.kill()
    proc.wait()
    assert not (work / "models" / "tiny").exists()  # nothing that predict could load
    folder = latest_checkpoint(work / CHECKPOINTS)
    assert folder is not None
    with pytest.raises(ValueError, match="incomplete"):
        check_model_dir(folder)
    state = json.loads((folder / "state.json").read_text())
    # Almost always 1: two more epochs take far longer than the 5 ms poll. Never the last epoch,
    # or the resumed run would have nothing left to train and this test would prove nothing.
    assert 1 <= state["epoch"] < EPOCHS
    (run,) = mlflow_runs(uri)
    assert run.info.run_id == state["run_id"] and run.info.status == "RUNNING"  # SIGKILL: no goodbye

    # A different config is refused by name, and the checkpoint survives the refusal.
    code, err = resume_in_process(work, monkeypatch, capsys, *overrides, f"train.epochs={EPOCHS + 1}")
    assert code == 2 and f"train.epochs was {EPOCHS}, now {EPOCHS + 1}" in err
    assert latest_checkpoint(work / CHECKPOINTS) == folder

    proc = train_cli(work, "tiny", "--resume", *overrides, link_data=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resuming after epoch {state['epoch']}" in proc.stderr
    # The resumed process trained exactly the epochs the checkpoint had not: at least one.
    trained_now = [int(n) for n in re.findall(r"^epoch (\d+): train loss", proc.stdout, re.MULTILINE)]
    assert trained_now == list(range(state["epoch"] + 1, EPOCHS + 1)) and trained_now
    resumed = json.loads((work / "models" / "tiny" / "metrics.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, EPOCHS + 1))
    assert resumed["resumed_from_epoch"] == state["epoch"] and expected["resumed_from_epoch"] is None
    for key in ("best_epoch", "dev", "test"):
        assert resumed[key] == expected[key], key
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in expected["history"]]
    assert [h["dev_macro_f1"] for h in resumed["history"]] == [h["dev_macro_f1"] for h in expected["history"]]
    weights = load_file(work / "models" / "tiny" / "model.safetensors")
    expected_weights = load_file(uninterrupted / "model.safetensors")
    assert weights.keys() == expected_weights.keys()
    assert all((weights[k] == expected_weights[k]).all() for k in weights)
    assert [p.name for p in (work / "models").iterdir()] == ["tiny"]  # checkpoints are gone

    from mlflow.tracking import MlflowClient

    (run,) = mlflow_runs(uri)
    assert run.info.run_id == state["run_id"] and run.info.status == "FINISHED"
    steps = MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, "dev_macro_f1")
    assert sorted({m.step for m in steps}) == list(range(1, EPOCHS + 1))
    assert "test_macro_f1" in run.data.metrics and run.data.params["train.epochs"] == str(EPOCHS)


def test_resume_without_a_checkpoint_is_refused(tmp_path, monkeypatch, capsys):
    code, err = resume_in_process(tmp_path, monkeypatch, capsys, "tracking.enabled=false")
    assert code == 2
    assert "nothing to resume: no checkpoint for 'tiny' in models/.checkpoints/tiny" in err
    assert "Traceback" not in err


def test_sigterm_ends_the_mlflow_run_killed_and_writes_no_model(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_training(tmp_path, "train.epochs=30", f"tracking.uri={uri}")
    wait_for(lambda: latest_checkpoint(tmp_path / CHECKPOINTS) is not None, proc, "the first checkpoint")
    sent = time.monotonic()
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert time.monotonic() - sent < 10
    assert not (tmp_path / "models" / "tiny").exists()
    assert "continue with --resume" in (tmp_path / "stderr.txt").read_text()
    assert latest_checkpoint(tmp_path / CHECKPOINTS) is not None  # still resumable
    assert [r.info.status for r in mlflow_runs(uri)] == ["KILLED"]


def test_checkpoint_every_zero_writes_no_checkpoint(tmp_path, monkeypatch, capsys):
    proc = start_training(tmp_path, "train.epochs=30", "tracking.enabled=false", "train.checkpoint_every=0")
    wait_for(printed(tmp_path, "epoch 2:"), proc, "epoch 2")
    proc.kill()
    proc.wait()
    assert not (tmp_path / "models").exists()
    code, err = resume_in_process(
        tmp_path, monkeypatch, capsys, "train.epochs=30", "tracking.enabled=false", "train.checkpoint_every=0"
    )
    assert code == 2 and "no checkpoint" in err


def test_a_half_written_checkpoint_is_never_the_latest(tmp_path):
    for name in ("epoch-0001", "epoch-0002", ".staging-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "epoch-0001" / "state.json").write_text("{}")
    (tmp_path / ".staging-x" / "state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch-0001"
    assert latest_checkpoint(tmp_path / "missing") is None


def _written_state(tmp_path: Path, stored: dict[str, object]) -> Path:
    """A checkpoint folder whose state says it was written with the config ``stored``."""
    import hashlib

    folder = tmp_path / "ckpt" / "tiny" / "epoch-0001"
    folder.mkdir(parents=True)
    canonical = json.dumps(stored, sort_keys=True, separators=(",", ":"))
    digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    (folder / "state.json").write_text(json.dumps({"format": 1, "config_digest": digest, "config": stored}))
    return folder


def test_a_checkpoint_from_before_a_new_setting_still_resumes_and_a_changed_one_does_not(tmp_path):
    """Code that gains a setting (at its default) must not strand a long training's checkpoint,
    while a checkpoint written with another value of any setting is still refused."""
    from training.checkpoint import load_checkpoint
    from training.config import load_config

    config = load_config(TINY, [f"train.checkpoint_dir={tmp_path / 'ckpt'}"])
    older = config.model_dump(mode="json")
    del older["train"]["checkpoint_every"]  # as if the setting did not exist when it was written
    folder = _written_state(tmp_path, older)
    assert load_checkpoint(config).folder == folder

    changed = config.model_dump(mode="json")
    changed["train"]["epochs"] = config.train.epochs + 1
    (folder / "state.json").unlink()
    folder.rmdir()
    _written_state(tmp_path, changed)
    with pytest.raises(ValueError, match=r"train\.epochs was"):
        load_checkpoint(config)

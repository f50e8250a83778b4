"""``torchrun --nproc_per_node=2`` on configs/tiny.yaml: disjoint shards, equal weights, one run, resume.

Each rank writes what it really trained on (``$CLAIMLENS_SHARD_RECORD/rank-<r>.json``: the batches
of example indices the sampler handed it, and digests of its weights after the first optimizer
step and after each epoch), so the checks below read facts from both processes.

Marked ``distributed`` (three torchrun trainings: minutes on 2 cores); ``make test-distributed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from inference.labels import LABELS
from inference.model import load_model_dir
from inference.predict import Classifier
from tests.conftest import ROOT
from training.checkpoint import latest_checkpoint
from training.distributed import RECORD_ENV, digest

pytestmark = pytest.mark.distributed

TINY = str(ROOT / "configs" / "tiny.yaml")
CHECKPOINTS = Path("models") / ".checkpoints" / "tiny"
SENTENCES = ["The army denied the report.", "Rebels said they took the town.", "The city is old."]
TRAIN_SIZE, BATCH = 400, 32  # configs/tiny.yaml's train limit and batch size


def torchrun(cwd: Path, record: Path, *args: str) -> subprocess.Popen[str]:
    """Two training processes on configs/tiny.yaml in ``cwd``, output to files there."""
    if not (cwd / "data").exists():
        (cwd / "data").symlink_to(ROOT / "data")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = os.environ | {"MLFLOW_TRACKING_URI": "", "PYTHONUNBUFFERED": "1", RECORD_ENV: str(record)}
    with (cwd / "stdout.txt").open("w") as out, (cwd / "stderr.txt").open("w") as err:
        return subprocess.Popen(
            [*command, "-m", "training", "--config", TINY, *args],
            cwd=cwd,
            stdout=out,
            stderr=err,
            text=True,
            env=env,
        )


def finished(proc: subprocess.Popen[str], cwd: Path, timeout: int = 300) -> None:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"torchrun ran past {timeout}s")
    assert code == 0, (cwd / "stderr.txt").read_text()[-3000:]


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads((folder / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


def single_run(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("claimlens-tiny").experiment_id])
    return client, run


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """configs/tiny.yaml (2 epochs) trained by two processes into a temporary MLflow store."""
    work = tmp_path_factory.mktemp("ddp")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    proc = torchrun(work, work / "record", f"tracking.uri={uri}", "tracking.log_model=false")
    finished(proc, work)
    return {
        "work": work,
        "uri": uri,
        "model_dir": work / "models" / "tiny",
        "records": records(work / "record"),
    }


def test_each_rank_trains_on_its_own_shard_of_every_epoch(ddp):
    rank0, rank1 = ddp["records"]
    assert (rank0["rank"], rank1["rank"], rank0["world_size"]) == (0, 1, 2)
    assert rank0["epochs"].keys() == rank1["epochs"].keys() == {"1", "2"}
    for epoch in ("1", "2"):
        first = [i for batch in rank0["epochs"][epoch] for i in batch]
        second = [i for batch in rank1["epochs"][epoch] for i in batch]
        # As many steps on each rank, so neither waits alone in an all-reduce.
        assert len(rank0["epochs"][epoch]) == len(rank1["epochs"][epoch]) == (TRAIN_SIZE // BATCH) // 2
        assert len(set(first)) == len(first) and len(set(second)) == len(second)
        assert not set(first) & set(second)
        # Together they cover the epoch, less at most one batch (beyond a multiple of two).
        assert set(first) | set(second) <= set(range(TRAIN_SIZE))
        assert len(first) + len(second) >= TRAIN_SIZE - BATCH
    assert rank0["epochs"]["1"] != rank0["epochs"]["2"]  # reshuffled each epoch


def test_weights_agree_across_ranks_and_with_the_saved_model(ddp):
    rank0, rank1 = ddp["records"]
    assert rank0["digests"] == rank1["digests"]
    assert rank0["digests"].keys() == {"first_step", "epoch_1", "epoch_2"}
    assert len({rank0["digests"][k] for k in ("first_step", "epoch_1", "epoch_2")}) == 3  # they moved
    best = json.loads((ddp["model_dir"] / "metrics.json").read_text())["best_epoch"]
    model, _, _ = load_model_dir(ddp["model_dir"])
    assert digest(model) == rank1["digests"][f"epoch_{best}"]  # rank 1's weights are the ones saved


def test_rank_zero_alone_writes_a_model_that_loads_and_one_mlflow_run(ddp):
    predictions = Classifier.load(ddp["model_dir"]).predict(SENTENCES)
    assert len(predictions) == 3 and all(p.label in LABELS for p in predictions)
    metrics = json.loads((ddp["model_dir"] / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and set(metrics["test"]["per_class"]) == set(LABELS)
    assert [p.name for p in (ddp["work"] / "models").iterdir()] == ["tiny"]  # checkpoints removed
    client, run = single_run(ddp["uri"])
    assert run.info.status == "FINISHED" and "test_macro_f1" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev_macro_f1")] == [1, 2]
    stderr = (ddp["work"] / "stderr.txt").read_text()
    assert stderr.count("training 'tiny' from") == 1 and "on 2 processes" in stderr


def test_a_stopped_torchrun_training_resumes_to_the_same_model(ddp, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = (f"tracking.uri={uri}", "tracking.log_model=false")
    proc = torchrun(tmp_path, tmp_path / "stopped", *overrides)
    deadline = time.monotonic() + 300
    while latest_checkpoint(tmp_path / CHECKPOINTS) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint before torchrun ended ({proc.returncode}) or the deadline")
        time.sleep(0.005)
    proc.terminate()  # torchrun passes SIGTERM on to both ranks
    assert proc.wait(timeout=120) != 0
    folder = latest_checkpoint(tmp_path / CHECKPOINTS)
    assert folder is not None and not (tmp_path / "models" / "tiny").exists()
    epoch = json.loads((folder / "state.json").read_text())["epoch"]
    assert epoch in (1, 2)  # almost always 1: the next epoch takes longer than the poll

    finished(torchrun(tmp_path, tmp_path / "resumed", "--resume", *overrides), tmp_path)
    assert f"resuming after epoch {epoch} of 'tiny'" in (tmp_path / "stderr.txt").read_text()
    expected = json.loads((ddp["model_dir"] / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "models" / "tiny" / "metrics.json").read_text())
    for key in ("best_epoch", "dev", "test"):
        assert resumed[key] == expected[key], key
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in expected["history"]]
    weights = load_file(tmp_path / "models" / "tiny" / "model.safetensors")
    expected_weights = load_file(ddp["model_dir"] / "model.safetensors")
    assert all((weights[k] == expected_weights[k]).all() for k in expected_weights)
    # Both ranks restored the checkpoint: each trained only the remaining epochs, on the same
    # shards and to the same weights as the uninterrupted training.
    if epoch == 1:
        for again, before in zip(records(tmp_path / "resumed"), ddp["records"], strict=True):
            assert again["epochs"] == {"2": before["epochs"]["2"]}
            assert again["digests"]["epoch_2"] == before["digests"]["epoch_2"]
    client, run = single_run(uri)
    assert run.info.status == "FINISHED"
    assert sorted({m.step for m in client.get_metric_history(run.info.run_id, "dev_macro_f1")}) == [1, 2]

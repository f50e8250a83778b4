"""Experiment tracking behind a small interface; MLflow is the one real backend."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import inference
from inference.registry import DEFAULT_TRACKING_URI
from training.config import TrackingConfig

DEFAULT_URI = DEFAULT_TRACKING_URI  # one default for training and for the registry commands
PYFUNC_FILE = Path(inference.__file__).parent / "mlflow_model.py"
# The serving side of the logged model: what `mlflow.pyfunc.load_model` needs, and no more.
PIP_REQUIREMENTS = [
    "torch==2.13.0",
    "transformers>=5,<6",
    "safetensors",
    "tokenizers",
    "pyyaml",
    "pandas",
    "scikit-learn",
    "mlflow>=3,<4",
]


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_file(self, path: Path, folder: str | None = None) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_model(self, model_dir: Path, input_example: list[str]) -> None: ...


class NullTracker:
    """Tracking switched off: every call does nothing."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_file(self, path: Path, folder: str | None = None) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def log_model(self, model_dir: Path, input_example: list[str]) -> None:
        pass


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MlflowTracker:
    """Logs to the active MLflow run."""

    def __init__(self, config: TrackingConfig, run_id: str) -> None:
        self.config = config
        self.run_id: str | None = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics(metrics, step=step)

    def log_file(self, path: Path, folder: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=folder)

    def log_text(self, text: str, name: str) -> None:
        import mlflow

        mlflow.log_text(text, name)

    def log_model(self, model_dir: Path, input_example: list[str]) -> None:
        if not self.config.log_model:
            return
        import mlflow
        import pandas as pd

        from inference.mlflow_schema import SIGNATURE

        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(PYFUNC_FILE.parent)],
            pip_requirements=PIP_REQUIREMENTS,
            signature=SIGNATURE,
            input_example=pd.DataFrame({"text": input_example, "context": [None, *input_example[:-1]]}),
            registered_model_name=self.config.registered_model,
        )
        if self.config.registered_model and logged.registered_model_version is not None:
            tag_version(self.config.registered_model, str(logged.registered_model_version), model_dir)


def tag_version(name: str, version: str, model_dir: Path) -> None:
    """Tag a registered version with its config digest and dev/test metrics (``promote`` reads them)."""
    from mlflow.tracking import MlflowClient

    from inference.registry import version_tags

    client = MlflowClient()  # the tracking URI the active run uses
    for key, value in version_tags(model_dir).items():
        client.set_model_version_tag(name, version, key, value)


def tracking_uri(config: TrackingConfig) -> str:
    return config.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


@contextmanager
def tracking_run(config: TrackingConfig, run_name: str, run_id: str | None = None) -> Iterator[Tracker]:
    """An MLflow run (or a ``NullTracker``); a run that raises is ended as FAILED or KILLED.

    With ``run_id`` the existing run is resumed (MLflow sets it RUNNING again), so a training
    continued from a checkpoint ends in the run it started in.
    """
    if not config.enabled:
        yield NullTracker()
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri(config))
    mlflow.set_experiment(config.experiment)
    tags = {"mlflow.source.git.commit": git_commit()}
    try:
        run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
    except MlflowException as err:
        if run_id is None:
            raise
        raise ValueError(f"cannot resume MLflow run {run_id} at {tracking_uri(config)}: {err}") from None
    try:
        yield MlflowTracker(config, run.info.run_id)
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")

"""The MLflow model registry: model URIs to local folders, version tags, and champion promotion.

``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` name a registered version of the pyfunc that
``claimlens-train`` logs; the claimlens model folder travels inside it as the artifact
``model_dir``. Each version carries its training config digest and its metrics as tags, which
``promote`` compares before it moves an alias.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from inference.model import check_model_dir, read_info

# Where training logs with no tracking.uri and no $MLFLOW_TRACKING_URI: an embedded SQLite store.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
CACHE_ENV = "CLAIMLENS_MODEL_CACHE"
DEFAULT_CACHE = "~/.cache/claimlens/models"
ARTIFACT = "model_dir"  # the name training/tracking.py logs the model folder under
DIGEST_TAG = "config_digest"
SCORE_TAG = "test_macro_f1"  # what promote compares
# Fail in seconds when the server is down, rather than after MLflow's minutes of retries.
FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9][^/@]*)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, by alias or by number."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` as a ``ModelRef``; ``ValueError`` otherwise.

    >>> parse_model_uri("models:/claimlens-default@champion").alias
    'champion'
    """
    match = _URI.match(uri)
    if not match:
        raise ValueError(f"model URI {uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    return ModelRef(match["name"], match["alias"], match["version"])


def version_tags(model_dir: Path) -> dict[str, str]:
    """The tags a registered version carries: its config digest, dev and test metrics (as text).

    >>> version_tags(Path("models/quickstart"))["test_macro_f1"]  # doctest: +SKIP
    '0.8123'
    """
    from inference.evaluate import flat_metrics

    info = read_info(model_dir)
    tags = {DIGEST_TAG: info.config_digest}
    for split in ("dev", "test"):
        if info.metrics.get(split):
            tags |= {k: repr(float(v)) for k, v in flat_metrics(info.metrics[split], split).items()}
    return tags


def store_uri(given: str | None = None) -> str:
    """``given``, else ``$MLFLOW_TRACKING_URI``, else the store training writes to by default."""
    return given or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def fail_fast_http() -> None:
    """No HTTP retries and a 10 s timeout for MLflow calls, unless the environment already says."""
    for key, value in FAST_HTTP.items():
        os.environ.setdefault(key, value)


@contextmanager
def registry_errors(uri: str) -> Iterator[None]:
    """MLflow's and the network's exceptions as one-line ``ValueError``s naming the server."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        text = str(err.message).splitlines()[0] if err.message else type(err).__name__
        if "Max retries exceeded" in text or "Connection refused" in text or "timed out" in text:
            raise ValueError(f"cannot reach the tracking server at {uri}") from None
        raise ValueError(f"{text} (tracking server {uri})") from None
    except requests.exceptions.RequestException:
        raise ValueError(f"cannot reach the tracking server at {uri}") from None


def _require_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ValueError(f"no registered model named {name!r}") from None
        raise


def get_version(client: Any, ref: ModelRef) -> Any:
    """The ``ModelVersion`` ``ref`` names, with a clear error for an unknown name, alias or version."""
    from mlflow.exceptions import MlflowException

    _require_model(client, ref.name)
    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        return client.get_model_version(ref.name, str(ref.version))
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        what = f"alias {ref.alias!r}" if ref.alias else f"version {ref.version}"
        raise ValueError(f"registered model {ref.name!r} has no {what}") from None


def resolve_model(ref: str | Path, tracking_uri: str | None = None) -> Path:
    """A local model folder for ``ref``: a path as it is, a ``models:/`` URI downloaded and cached.

    Versions are cached under ``$CLAIMLENS_MODEL_CACHE`` (default ``~/.cache/claimlens/models``)
    as ``<name>/<version>``: a registered version never changes, so an alias is looked up anew
    each time but a version is downloaded once.

    >>> resolve_model("models:/claimlens-default@champion")  # doctest: +SKIP
    PosixPath('/home/me/.cache/claimlens/models/claimlens-default/3/artifacts/tiny')
    """
    if not str(ref).startswith("models:/"):
        return Path(ref)
    parsed = parse_model_uri(str(ref))
    fail_fast_http()
    from mlflow.tracking import MlflowClient

    uri = store_uri(tracking_uri)
    with registry_errors(uri):
        version = get_version(MlflowClient(tracking_uri=uri, registry_uri=uri), parsed)
        folder = _cached(parsed.name, str(version.version), uri)
    digest = version.tags.get(DIGEST_TAG)
    if digest and read_info(folder).config_digest != digest:
        raise ValueError(f"{folder} does not match the config digest {digest} of {parsed}")
    return folder


def _cached(name: str, version: str, uri: str) -> Path:
    """The model folder of ``name``'s ``version``, downloaded into the cache unless it is there."""
    import mlflow

    root = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser() / quote(name, safe="")
    target = root / version
    if target.is_dir():
        return _model_folder(target)
    root.mkdir(parents=True, exist_ok=True)
    # Downloaded beside the target and renamed into place: a killed download is never reused.
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        mlflow.artifacts.download_artifacts(
            f"models:/{name}/{version}", dst_path=str(staging), tracking_uri=uri, registry_uri=uri
        )
        _model_folder(staging)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():  # else another process put the same version in place first
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _model_folder(target)


def _model_folder(pyfunc_dir: Path) -> Path:
    """The claimlens folder inside a downloaded pyfunc (its MLmodel says where ``model_dir`` went)."""
    mlmodel = pyfunc_dir / "MLmodel"
    if not mlmodel.is_file():
        raise ValueError(f"{pyfunc_dir} is not an MLflow model (no MLmodel file)")
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
    path = (flavor.get("artifacts") or {}).get(ARTIFACT, {}).get("path")
    if not path:
        raise ValueError(f"{mlmodel} has no {ARTIFACT!r} artifact: it was not logged by claimlens-train")
    folder = pyfunc_dir / path
    check_model_dir(folder)
    return folder


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` found and did."""

    name: str
    alias: str
    candidate: str
    candidate_score: float | None
    champion: str | None
    champion_score: float | None
    moved: bool

    def report(self) -> str:
        def figure(version: str | None, score: float | None) -> str:
            shown = "no test macro-F1" if score is None else f"test macro-F1 {score:.4f}"
            return f"version {version} ({shown})"

        lines = [f"candidate: {figure(self.candidate, self.candidate_score)}"]
        held = figure(self.champion, self.champion_score) if self.champion else "none"
        lines.append(f"current {self.alias}: {held}")
        if self.champion == self.candidate:
            lines.append(f"{self.name}@{self.alias} is already version {self.candidate}: nothing to do")
        elif self.moved:
            lines.append(f"moved {self.name}@{self.alias} to version {self.candidate}")
        else:
            lines.append(
                f"kept {self.name}@{self.alias} at version {self.champion}: the candidate is not better"
            )
        return "\n".join(lines)


def promote(
    name: str,
    alias: str = "champion",
    version: str | None = None,
    force: bool = False,
    tracking_uri: str | None = None,
) -> Promotion:
    """Point ``alias`` at ``version`` (default: the latest) if its test macro-F1 beats the alias's.

    ``force`` moves the alias whatever the figures say (and accepts versions without them).

    >>> promote("claimlens-default", "champion").moved  # doctest: +SKIP
    True
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", alias):
        raise ValueError(f"alias {alias!r} must be letters, digits, '_' or '-'")
    fail_fast_http()
    from mlflow.tracking import MlflowClient

    uri = store_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with registry_errors(uri):
        candidate = get_version(client, ModelRef(name, version=version)) if version else _latest(client, name)
        champion = _holder(client, name, alias)
        result = Promotion(
            name,
            alias,
            str(candidate.version),
            _score(candidate, name, required=not force),
            str(champion.version) if champion else None,
            _score(champion, name, required=not force) if champion else None,
            moved=False,
        )
        if result.champion == result.candidate:
            return result
        better = result.champion is None or (result.candidate_score or 0.0) > (result.champion_score or 0.0)
        if force or better:
            client.set_registered_model_alias(name, alias, result.candidate)
            return dataclasses.replace(result, moved=True)
    return result


def _latest(client: Any, name: str) -> Any:
    if "'" in name:
        raise ValueError(f"model name {name!r} must not contain a quote")
    _require_model(client, name)
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise ValueError(f"registered model {name!r} has no versions")
    return max(versions, key=lambda v: int(v.version))


def _holder(client: Any, name: str, alias: str) -> Any:
    """The version ``alias`` points at, or None if it points nowhere yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _score(version: Any, name: str, required: bool) -> float | None:
    raw = version.tags.get(SCORE_TAG)
    if raw is None and required:
        raise ValueError(
            f"version {version.version} of {name!r} has no {SCORE_TAG} tag (trained without a test "
            "split, or before versions were tagged); retrain it, or use --force"
        )
    return None if raw is None else float(raw)

"""A real ``mlflow server`` on loopback: training logs there and registers tagged versions,
``claimlens promote`` moves the champion alias, ``models:/`` URIs resolve for predict and serve,
and ``mlflow models serve`` answers ``/invocations`` like the library.

Marked ``registry`` (minutes: a server, two trainings, two model servers); ``make test-registry``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import free_port
from inference.cli import main as claimlens
from inference.labels import LABELS
from inference.predict import Classifier
from inference.registry import resolve_model
from tests.conftest import ROOT

pytestmark = pytest.mark.registry

BIN = Path(sys.executable).parent
NAME = "claimlens-tiny"  # configs/tiny.yaml's tracking.registered_model
SENTENCES = ["The army denied the report.", "Rebels said they took the town.", "The city is old."]
# Two trainings of configs/tiny.yaml whose test macro-F1 differ: version 1, then the better version 2.
# After an epoch the tiny random BERT still answers official_statement to everything, so its test
# macro-F1 follows the test set's share of that label: lower on the first 40 test sentences than on 80.
TRAININGS = (
    ["train.epochs=1", "data.test=[{path: data/corpus/test.jsonl, limit: 40}]"],
    ["train.epochs=1"],
)


def start(command: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """A server process in a session of its own, so that stopping it also stops its workers."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ | env
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # a worker that outlived its parent
        os.killpg(proc.pid, signal.SIGKILL)


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    """Poll ``url`` until it answers 200; fail (with the server's log) if it exits or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{log.name}: exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``mlflow server`` with a SQLite store and proxied artifacts, on a free loopback port."""
    work = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(work / "artifacts"), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    proc = start(command, work / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc, work / "server.log")
        yield {"url": url, "artifacts": work / "artifacts"}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def registered(server: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """configs/tiny.yaml trained twice with ``MLFLOW_TRACKING_URI`` at the server: versions 1 and 2."""
    model_dirs = []
    for overrides in TRAININGS:
        work = tmp_path_factory.mktemp("train")
        (work / "data").symlink_to(ROOT / "data")
        proc = subprocess.run(
            [sys.executable, "-m", "training", "--config", str(ROOT / "configs" / "tiny.yaml"), *overrides],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=900,
            env=os.environ | {"MLFLOW_TRACKING_URI": server["url"]},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        model_dirs.append(work / "models" / "tiny")
    metrics = [json.loads((d / "metrics.json").read_text()) for d in model_dirs]
    return server | {"model_dirs": model_dirs, "metrics": metrics}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``claimlens ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        code = claimlens(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fast_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the commands set MLflow's HTTP variables themselves, and undo what they set afterwards."""
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(key, "")  # recorded as absent before, so the undo removes it ...
        monkeypatch.delenv(key)  # ... and absent now, as in a fresh shell


def client(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def test_training_logs_to_the_server_and_tags_each_version(registered):
    mlflow = client(registered["url"])
    versions = sorted(mlflow.search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))
    assert [v.version for v in versions] == ["1", "2"]
    for version, model_dir, metrics in zip(
        versions, registered["model_dirs"], registered["metrics"], strict=True
    ):
        assert mlflow.get_run(version.run_id).info.status == "FINISHED"
        digest = hashlib.sha256((model_dir / "train_config.yaml").read_bytes()).hexdigest()
        assert version.tags["config_digest"] == f"sha256:{digest}"
        assert float(version.tags["test_macro_f1"]) == metrics["test"]["macro_f1"]
        assert float(version.tags["dev_macro_f1"]) == metrics["dev"]["macro_f1"]
        for label in LABELS:
            assert float(version.tags[f"test_f1_{label}"]) == metrics["test"]["per_class"][label]["f1"]
    # The artifacts went through the server into its --artifacts-destination.
    assert list(registered["artifacts"].rglob("train_config.yaml"))
    assert list(registered["artifacts"].rglob("model.safetensors"))


def test_promote_moves_the_champion_only_for_a_better_test_macro_f1(registered, capsys, fast_http):
    first, second = (m["test"]["macro_f1"] for m in registered["metrics"])
    assert second > first, "TRAININGS must give version 2 the better test macro-F1"
    url = ("--tracking-uri", registered["url"])
    promote = ("promote", "--model", NAME, "--alias", "champion", *url)

    code, out, _ = run_cli(capsys, *promote, "--version", "1")
    assert (
        code == 0 and "current champion: none" in out and "moved claimlens-tiny@champion to version 1" in out
    )
    code, out, _ = run_cli(capsys, *promote)  # the latest: version 2, which is better
    assert code == 0 and f"{first:.4f}" in out and f"{second:.4f}" in out
    assert "moved claimlens-tiny@champion to version 2" in out
    code, out, _ = run_cli(capsys, *promote, "--version", "1")  # worse: kept
    assert code == 1 and "kept claimlens-tiny@champion at version 2" in out
    assert client(registered["url"]).get_model_version_by_alias(NAME, "champion").version == "2"
    code, out, _ = run_cli(capsys, *promote, "--version", "1", "--force")
    assert code == 0 and "moved claimlens-tiny@champion to version 1" in out
    code, out, _ = run_cli(capsys, *promote, "--version", "1")
    assert code == 0 and "already version 1" in out
    assert client(registered["url"]).get_model_version_by_alias(NAME, "champion").version == "1"


def test_registry_mistakes_are_one_line_errors(registered, capsys, monkeypatch, fast_http):
    url = ("--tracking-uri", registered["url"])
    mlflow = client(registered["url"])
    # A version registered by hand, without the tags training gives its versions.
    logged = mlflow.get_model_version(NAME, "1").source  # models:/<logged model id>
    mlflow.create_registered_model("untagged")
    mlflow.create_model_version("untagged", logged, model_id=logged.removeprefix("models:/"))
    capsys.readouterr()  # MLflow's own log lines from the set-up
    dead = f"http://127.0.0.1:{free_port()}"
    cases = [
        (("promote", "--model", "no-such-model", *url), "no registered model named 'no-such-model'"),
        (
            ("promote", "--model", NAME, "--version", "99", *url),
            f"registered model '{NAME}' has no version 99",
        ),
        (("promote", "--model", "untagged", *url), "version 1 of 'untagged' has no test_macro_f1 tag"),
        (("promote", "--model", NAME, "--tracking-uri", dead), f"cannot reach the tracking server at {dead}"),
    ]
    for args, message in cases:
        started = time.monotonic()
        code, _, err = run_cli(capsys, *args)
        assert err.startswith(f"claimlens promote: error: {message}"), err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert time.monotonic() - started < 15  # no minutes of HTTP retries
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["url"])
    code, _, err = run_cli(capsys, "predict", "--model", f"models:/{NAME}@nosuch", "A sentence.")
    assert (
        code == 2
        and err.strip() == f"claimlens predict: error: registered model '{NAME}' has no alias 'nosuch'"
    )
    for bad in ("models:/", f"models:/{NAME}", f"models:/{NAME}/latest"):
        with pytest.raises(ValueError, match="is not models:/NAME@ALIAS or models:/NAME/VERSION"):
            resolve_model(bad)


@pytest.fixture(scope="module")
def alias(registered: dict[str, Any]) -> str:
    """An alias of this module's own on version 2, so these tests don't depend on promote's."""
    client(registered["url"]).set_registered_model_alias(NAME, "served", "2")
    return f"models:/{NAME}@served"


def test_a_models_uri_resolves_to_the_cached_model_folder(registered, alias, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLAIMLENS_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["url"])
    folder = resolve_model(alias)
    assert folder.is_relative_to(tmp_path / "cache" / NAME / "2")
    assert resolve_model(f"models:/{NAME}/2") == folder  # cached: one folder per version
    assert [p.name for p in (tmp_path / "cache" / NAME).iterdir()] == ["2"]  # no staging left
    assert resolve_model(registered["model_dirs"][1]) == registered["model_dirs"][1]  # a path stays
    expected = Classifier.load(registered["model_dirs"][1]).predict(SENTENCES)
    assert Classifier.load(folder).predict(SENTENCES) == expected
    code, out, _ = run_cli(capsys, "predict", "--model", alias, *SENTENCES)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows] == [p.label for p in expected]
    assert [r["score"] for r in rows] == pytest.approx([p.score for p in expected], abs=1e-6)


def test_claimlens_serve_takes_a_models_uri(registered, alias, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    command = [str(BIN / "claimlens"), "serve", "--model", alias, "--port", str(port)]
    proc = start(command, log, MLFLOW_TRACKING_URI=registered["url"], CLAIMLENS_MODEL_CACHE=str(tmp_path))
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=30) as response:
            model = json.loads(response.read())
    finally:
        stop(proc)
    version = client(registered["url"]).get_model_version(NAME, "2")
    assert model["name"] == "tiny" and model["config_digest"] == version.tags["config_digest"]


def test_mlflow_models_serve_answers_like_the_library(registered, alias, tmp_path):
    port = free_port()
    log = tmp_path / "mlflow-serve.log"
    command = [str(BIN / "mlflow"), "models", "serve", "-m", alias, "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # It starts `uvicorn` by name: the virtualenv's bin must be on PATH, as in an activated venv.
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = start(command, log, MLFLOW_TRACKING_URI=registered["url"], PATH=path)
    contexts = [None, SENTENCES[0], SENTENCES[1]]
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc, log)
        data = [[text, context] for text, context in zip(SENTENCES, contexts, strict=True)]
        body = {"dataframe_split": {"columns": ["text", "context"], "data": data}}
        answer = post_json(f"http://127.0.0.1:{port}/invocations", body)
    finally:
        stop(proc)
    expected = Classifier.load(registered["model_dirs"][1]).predict(SENTENCES, contexts)
    rows = answer["predictions"]
    assert len(rows) == 3
    assert [r["label"] for r in rows] == [p.label for p in expected]
    for row, prediction in zip(rows, expected, strict=True):
        assert row["score"] == pytest.approx(prediction.score, abs=1e-5)
        for label in LABELS:
            assert row[f"score_{label}"] == pytest.approx(prediction.scores[label], abs=1e-5)

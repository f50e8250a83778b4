"""Every path reads context the same way: one article, one context model, five paths, one answer.

The library (``Classifier.analyze`` and module-level ``predict`` with contexts), the CLI
(``analyze`` and ``predict --input`` with doc/idx rows in shuffled file order), HTTP
``/v1/analyze``, HTTP ``/v1/classify`` with ``contexts``, and the MLflow pyfunc reloaded in a
fresh interpreter must give the same labels, scores and truncated flags.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from benchmarks.harness import run_server
from inference import Classifier, predict
from inference.inputs import previous_sentences
from tests.conftest import ROOT, run_python

ARTICLE = (ROOT / "examples" / "article.txt").read_text(encoding="utf-8")

LOG_AND_RELOAD = """
import json, sys
from pathlib import Path
import mlflow, pandas as pd, torch
from training.config import TrackingConfig
from training.tracking import tracking_run

uri, model_dir, threads, texts, contexts = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), *json.loads(sys.argv[4])
with tracking_run(TrackingConfig(uri=uri, experiment="paths"), "paths") as tracker:
    tracker.log_model(model_dir, input_example=texts[:3])
    run_id = tracker.run_id
print(run_id)
"""

RELOAD = """
import json, sys
import mlflow, pandas as pd, torch
uri, run_id, threads, texts, contexts = sys.argv[1], sys.argv[2], int(sys.argv[3]), *json.loads(sys.argv[4])
torch.set_num_threads(threads)
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
print(json.dumps(model.predict(pd.DataFrame({"text": texts, "context": contexts})).to_dict(orient="records")))
"""


def _python(code: str, args: list[str], cwd: Path, pythonpath: str) -> str:
    return run_python(code, args, cwd, pythonpath).strip().splitlines()[-1]


def _cli(*args: object) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "inference", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _key(label: str, scores: dict[str, float], truncated: bool) -> tuple:
    return (label, tuple(sorted(scores.items())), truncated)


@pytest.fixture(scope="module")
def reference(sharp_context_model_dir) -> tuple[list[str], list[str | None], list[tuple]]:
    clf = Classifier.load(sharp_context_model_dir)
    result = clf.analyze(ARTICLE)
    texts = [s.sentence for s in result]
    contexts = previous_sentences(texts)
    # The context must matter for this test to mean anything.
    alone = clf.predict(texts)
    assert [p.scores for p in alone] != [s.scores for s in result]
    return texts, contexts, [_key(s.label, s.scores, s.truncated) for s in result]


def test_library_paths_agree(sharp_context_model_dir, reference):
    texts, contexts, want = reference
    got = predict(texts, model=sharp_context_model_dir, contexts=contexts)
    assert [_key(p.label, p.scores, p.truncated) for p in got] == want


def test_cli_paths_agree(sharp_context_model_dir, reference, tmp_path):
    texts, _, want = reference
    rows = [
        json.loads(line)
        for line in _cli(
            "analyze",
            "--model",
            sharp_context_model_dir,
            "--format",
            "jsonl",
            ROOT / "examples" / "article.txt",
        ).splitlines()
    ]
    assert [_key(r["label"], r["scores"], r["truncated"]) for r in rows] == want
    # predict --input: the rows of one doc in shuffled file order, put back in order by idx.
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "doc": 7, "idx": i, "text": texts[i]}) + "\n" for i in order))
    out = {
        r["id"]: r
        for r in map(
            json.loads, _cli("predict", "--model", sharp_context_model_dir, "--input", src).splitlines()
        )
    }
    assert [_key(out[i]["label"], out[i]["scores"], out[i]["truncated"]) for i in range(len(texts))] == want


def test_http_paths_agree(sharp_context_model_dir, reference):
    texts, contexts, want = reference
    with run_server(sharp_context_model_dir, startup_timeout_s=120) as server:
        analyzed = httpx.post(f"{server.base}/v1/analyze", json={"text": ARTICLE}, timeout=60).json()
        classified = httpx.post(
            f"{server.base}/v1/classify", json={"sentences": texts, "contexts": contexts}, timeout=60
        ).json()
    assert [_key(s["label"], s["scores"], s["truncated"]) for s in analyzed["sentences"]] == want
    assert [_key(p["label"], p["scores"], p["truncated"]) for p in classified["predictions"]] == want


def test_mlflow_pyfunc_agrees(sharp_context_model_dir, reference, tmp_path):
    texts, contexts, want = reference
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    payload = json.dumps([texts, contexts])
    threads = str(torch.get_num_threads())
    run_id = _python(
        LOG_AND_RELOAD, [uri, str(sharp_context_model_dir), threads, payload], tmp_path, str(ROOT)
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rows = json.loads(_python(RELOAD, [uri, run_id, threads, payload], elsewhere, ""))
    labels = [k for k in rows[0] if k.startswith("score_")]
    got = [_key(r["label"], {k.removeprefix("score_"): r[k] for k in labels}, r["truncated"]) for r in rows]
    assert got == want

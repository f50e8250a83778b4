"""Every path reads context the same way: one article, one context model, five paths, one answer.

The library (``Classifier.analyze`` and module-level ``predict`` with contexts), the CLI
(``analyze`` and ``predict --input`` with doc/idx rows in shuffled file order), HTTP
``/v1/analyze``, HTTP ``/v1/classify`` with ``contexts`` (and ``contexts_after``), and the
MLflow pyfunc reloaded in a fresh interpreter (context as text, and as doc/idx) must give the
same labels, scores and truncated flags. Twice: for a model that reads the previous sentence,
and for one whose window is the two previous sentences and the next one.
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
from inference.inputs import PREVIOUS, Context, previous_sentences
from tests.conftest import ROOT, run_python

ARTICLE = (ROOT / "examples" / "article.txt").read_text(encoding="utf-8")

LOG_AND_RELOAD = """
import json, sys
from pathlib import Path
import mlflow, pandas as pd, torch
from training.config import TrackingConfig
from training.tracking import tracking_run

uri, model_dir, texts = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[4])[0]
with tracking_run(TrackingConfig(uri=uri, experiment="paths"), "paths") as tracker:
    tracker.log_model(model_dir, input_example=texts[:3])
    run_id = tracker.run_id
print(run_id)
"""

RELOAD = """
import json, sys
import mlflow, pandas as pd, torch
uri, run_id, threads, texts, before, after, order = sys.argv[1], sys.argv[2], int(sys.argv[3]), *json.loads(sys.argv[4])
torch.set_num_threads(threads)
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
as_text = {"text": texts, "context": before} | ({"context_after": after} if any(after) else {})
by_place = {"text": [texts[i] for i in order], "doc": ["7"] * len(order), "idx": order}
print(json.dumps([model.predict(pd.DataFrame(f)).to_dict(orient="records") for f in (as_text, by_place)]))
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


@pytest.fixture(scope="module", params=["sharp_context_model_dir", "sharp_window_model_dir"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def reference(model_dir) -> tuple[list[str], list[Context], list[tuple]]:
    clf = Classifier.load(model_dir)
    result = clf.analyze(ARTICLE)
    texts = [s.sentence for s in result]
    contexts = clf.contexts(texts)
    # The context must matter for this test to mean anything; and a window, beyond one sentence.
    assert [p.scores for p in clf.predict(texts)] != [s.scores for s in result]
    if clf.info.window != PREVIOUS:
        assert [p.scores for p in clf.predict(texts, previous_sentences(texts))] != [s.scores for s in result]
    return texts, contexts, [_key(s.label, s.scores, s.truncated) for s in result]


def _as_text(model_dir: Path, contexts: list[Context]) -> tuple[list[str | None], list[str | None]]:
    """Each context cut to the model's window as text: the part before (joined), the part after."""
    window = Classifier.load(model_dir).info.window
    parts = [window.parts(c) for c in contexts]
    return [b or None for b, _ in parts], [a or None for _, a in parts]


def test_library_paths_agree(model_dir, reference):
    texts, contexts, want = reference
    got = predict(texts, model=model_dir, contexts=contexts)
    assert [_key(p.label, p.scores, p.truncated) for p in got] == want
    before, after = _as_text(model_dir, contexts)
    as_text = predict(texts, model=model_dir, contexts=[Context.of(b, a) for b, a in zip(before, after, strict=True)])
    assert [_key(p.label, p.scores, p.truncated) for p in as_text] == want
    if not any(after):  # a window without the next sentence: plain strings are the whole context
        assert [_key(p.label, p.scores, p.truncated) for p in predict(texts, model_dir, before)] == want


def test_cli_paths_agree(model_dir, reference, tmp_path):
    texts, _, want = reference
    rows = [
        json.loads(line)
        for line in _cli(
            "analyze",
            "--model",
            model_dir,
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
            json.loads, _cli("predict", "--model", model_dir, "--input", src).splitlines()
        )
    }
    assert [_key(out[i]["label"], out[i]["scores"], out[i]["truncated"]) for i in range(len(texts))] == want


def test_http_paths_agree(model_dir, reference):
    texts, contexts, want = reference
    before, after = _as_text(model_dir, contexts)
    body = {"sentences": texts, "contexts": before} | ({"contexts_after": after} if any(after) else {})
    with run_server(model_dir, startup_timeout_s=120) as server:
        analyzed = httpx.post(f"{server.base}/v1/analyze", json={"text": ARTICLE}, timeout=60).json()
        classified = httpx.post(f"{server.base}/v1/classify", json=body, timeout=60).json()
        described = httpx.get(f"{server.base}/v1/model", timeout=60).json()
    assert [_key(s["label"], s["scores"], s["truncated"]) for s in analyzed["sentences"]] == want
    assert [_key(p["label"], p["scores"], p["truncated"]) for p in classified["predictions"]] == want
    window = Classifier.load(model_dir).info.window
    assert (described["context_before"], described["context_after"]) == (window.before, window.after)


def test_mlflow_pyfunc_agrees(model_dir, reference, tmp_path):
    texts, contexts, want = reference
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    order = list(range(len(texts)))
    random.Random(1).shuffle(order)  # by place: rows out of order, put back in order by idx
    payload = json.dumps([texts, *_as_text(model_dir, contexts), order])
    threads = str(torch.get_num_threads())
    run_id = _python(LOG_AND_RELOAD, [uri, str(model_dir), threads, payload], tmp_path, str(ROOT))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    as_text, by_place = json.loads(_python(RELOAD, [uri, run_id, threads, payload], elsewhere, ""))
    labels = [k for k in as_text[0] if k.startswith("score_")]

    def keys(rows: list[dict]) -> list[tuple]:
        return [_key(r["label"], {k.removeprefix("score_"): r[k] for k in labels}, r["truncated"]) for r in rows]

    assert keys(as_text) == want
    placed = dict(zip(order, keys(by_place), strict=True))
    assert [placed[i] for i in range(len(texts))] == want

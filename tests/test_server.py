"""The real server: uvicorn on a free loopback port, every route, good and bad input."""

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from inference.app import Settings, create_app
from inference.labels import LABELS
from inference.predict import Classifier
from tests.conftest import free_port


def start(model_dir, tmp_path_factory):
    port = free_port()
    # The log goes to a file: an unread pipe fills up and would block the server.
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference", "serve", "--model", str(model_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(log.read())
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not become healthy")
    yield base
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    yield from start(tiny_model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def context_server(sharp_context_model_dir, tmp_path_factory):
    yield from start(sharp_context_model_dir, tmp_path_factory)


def test_health_and_model_info(server):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/v1/model").json()
    assert info["name"] == "unit" and info["labels"] == list(LABELS)
    assert info["base_model"] == "tiny-random" and info["config_digest"].startswith("sha256:")
    assert "dev" in info["metrics"]


def test_classify_keeps_order_and_matches_the_library(server, tiny_model_dir):
    sentences = ["Police said two men were held.", "The rebels denied it.", "It rained."]
    body = httpx.post(f"{server}/v1/classify", json={"sentences": sentences}).json()
    direct = Classifier.load(tiny_model_dir).predict(sentences)
    assert [p["label"] for p in body["predictions"]] == [p.label for p in direct]
    assert body["predictions"][0]["scores"] == pytest.approx(direct[0].scores, abs=1e-5)
    assert set(body["predictions"][0]) == {"label", "score", "scores", "truncated"}


def test_classify_passes_contexts_to_a_context_model(context_server, sharp_context_model_dir):
    sentences = ["Police said two men were held.", "The rebels denied it.", "It rained."]
    contexts = [None, "Police said two men were held.", ""]
    url = f"{context_server}/v1/classify"
    with_context = httpx.post(url, json={"sentences": sentences, "contexts": contexts}).json()
    alone = httpx.post(url, json={"sentences": sentences}).json()
    clf = Classifier.load(sharp_context_model_dir)
    for got, want in zip(with_context["predictions"], clf.predict(sentences, contexts), strict=True):
        assert got["scores"] == pytest.approx(want.scores, abs=1e-5)
    for got, want in zip(alone["predictions"], clf.predict(sentences), strict=True):
        assert got["scores"] == pytest.approx(want.scores, abs=1e-5)
    changed = with_context["predictions"][1]["scores"]
    assert changed != pytest.approx(alone["predictions"][1]["scores"], abs=1e-3)
    # No context and an empty one are the same: a document's first sentence.
    first = with_context["predictions"][2]["scores"]
    assert first == pytest.approx(alone["predictions"][2]["scores"], abs=1e-5)


def test_analyze_returns_offsets(server):
    text = 'Headline\n\nPolice said two men were held. "It is false," he said.'
    sentences = httpx.post(f"{server}/v1/analyze", json={"text": text}).json()["sentences"]
    assert [s["sentence"] for s in sentences] == [
        "Headline",
        "Police said two men were held.",
        '"It is false," he said.',
    ]
    for s in sentences:
        assert text[s["start"] : s["end"]] == s["sentence"] and s["label"] in LABELS


def test_openapi_docs(server):
    assert httpx.get(f"{server}/docs").status_code == 200
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/analyze", "/health", "/v1/model"} <= set(paths)


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("/v1/classify", {"sentences": []}, 422, "sentences"),
        ("/v1/classify", {"sentences": [1, 2]}, 422, "sentences.0"),
        ("/v1/classify", {"sentences": [""]}, 422, "sentences.0"),
        ("/v1/classify", {"sentences": ["ok", "   "]}, 422, "blank"),
        ("/v1/classify", {"sentences": ["x"] * 257}, 422, "at most 256"),
        ("/v1/classify", {"sentences": ["x" * 2001]}, 422, "at most 2000"),
        ("/v1/classify", {"sentences": "not a list"}, 422, "sentences"),
        ("/v1/classify", {"texts": ["a"]}, 422, "texts"),
        ("/v1/classify", {"sentences": ["a", "b"], "contexts": [None]}, 422, "1 contexts for 2 sentences"),
        ("/v1/classify", {"sentences": ["a"], "contexts": [5]}, 422, "contexts.0"),
        ("/v1/classify", {"sentences": ["a"], "contexts": ["x" * 2001]}, 422, "at most 2000"),
        ("/v1/classify", ["a"], 422, "body"),
        ("/v1/analyze", {"text": ""}, 422, "text"),
        ("/v1/analyze", {"text": "   "}, 422, "text is empty"),
        ("/v1/analyze", {"text": 5}, 422, "text"),
        ("/v1/analyze", {"text": "x" * 100_001}, 422, "at most 100000"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(server, path, payload, status, message):
    response = httpx.post(f"{server}{path}", json=payload)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_malformed_json_and_oversized_bodies(server):
    response = httpx.post(
        f"{server}/v1/classify", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "JSON" in response.json()["error"]
    response = httpx.post(
        f"{server}/v1/analyze", content=b"x" * 1_000_001, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "bytes" in response.json()["error"]
    assert httpx.get(f"{server}/v1/nothing").status_code == 404


def test_health_is_503_until_the_model_is_loaded(tiny_model_dir):
    release = threading.Event()

    def slow_loader(path: str) -> Classifier:
        release.wait(30)
        return Classifier.load(path)

    app = create_app(Settings(model_dir=str(tiny_model_dir)), loader=slow_loader)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 503
        assert client.post("/v1/classify", json={"sentences": ["a"]}).status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/health").status_code == 200
        assert client.post("/v1/classify", json={"sentences": ["a"]}).status_code == 200


def test_server_refuses_a_broken_model_dir(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "inference", "serve", "--model", str(tmp_path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "incomplete" in proc.stdout + proc.stderr

"""Hostile input, authentication, CORS, request ids, queue limits and graceful shutdown."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from inference.app import Settings, create_app
from inference.predict import Classifier
from tests.conftest import ROOT, free_port

KEYS = ("k-0123456789abcdef-one", "k-0123456789abcdef-two")


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)} | (env or {}),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(proc.stdout.read() if proc.stdout else "server exited")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("server did not become healthy")


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir):
    port = free_port()
    proc = start(
        [sys.executable, "-m", "inference", "serve", "--model", str(tiny_model_dir), "--port", str(port)],
        port,
        env={"CLAIMLENS_API_KEYS": ",".join(KEYS)},
    )
    yield f"http://127.0.0.1:{port}", proc
    proc.terminate()
    proc.wait(timeout=30)


def test_api_keys_guard_every_route_but_health(keyed_server):
    base, _ = keyed_server
    assert httpx.get(f"{base}/health").status_code == 200
    body = {"sentences": ["Police said so."]}
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": KEYS[0]}):
        for response in (
            httpx.post(f"{base}/v1/classify", json=body, headers=headers),
            httpx.get(f"{base}/v1/model", headers=headers),
            httpx.get(f"{base}/openapi.json", headers=headers),
        ):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "API key" in response.json()["error"]
    for key in KEYS:
        ok = httpx.post(f"{base}/v1/classify", json=body, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200


def test_keys_never_reach_the_log(keyed_server):
    base, proc = keyed_server
    httpx.post(
        f"{base}/v1/classify", json={"sentences": ["x"]}, headers={"Authorization": f"Bearer {KEYS[0]}"}
    )
    httpx.get(f"{base}/v1/model", headers={"Authorization": "Bearer k-guess-0123456789abcdef"})
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=30)[0]
    assert "GET /v1/model" in log  # the access log is there ...
    assert KEYS[0] not in log and KEYS[1] not in log and "k-guess" not in log  # ... the keys are not


def test_weak_api_keys_are_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="at least 16"):
        Settings(model_dir=str(tiny_model_dir), api_keys=("short",))
    assert "k-0123" not in repr(Settings(model_dir=str(tiny_model_dir), api_keys=KEYS))


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    with TestClient(create_app(Settings(model_dir=str(tiny_model_dir)))) as c:
        while c.get("/health").status_code != 200:
            time.sleep(0.05)
        yield c


def test_invalid_utf8_is_a_400(client):
    response = client.post(
        "/v1/classify", content=b'{"sentences": ["caf\xe9"]}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]


def test_a_chunked_body_cannot_dodge_the_size_limit(client):
    def chunks():
        yield b'{"sentences": ["'
        for _ in range(200):
            yield b"x" * 10_000
        yield b'"]}'

    response = client.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["error"]


def test_too_many_sentences_in_an_article_is_a_422(tiny_model_dir):
    app = create_app(Settings(model_dir=str(tiny_model_dir), max_sentences=3))
    with TestClient(app) as c:
        while c.get("/health").status_code != 200:
            time.sleep(0.05)
        response = c.post("/v1/analyze", json={"text": "One. Two. Three. Four."})
        assert response.status_code == 422 and "at most 3" in response.json()["error"]


def test_truncation_is_reported_not_silent(client):
    long = "The ministry said the army had arrested rebels in the town, " * 10
    response = client.post("/v1/classify", json={"sentences": ["Police said so.", long]})
    assert [p["truncated"] for p in response.json()["predictions"]] == [False, True]


def test_cors_is_closed_by_default_and_opens_only_to_named_origins(client, tiny_model_dir):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/classify", headers=preflight).headers
    assert (
        "access-control-allow-origin"
        not in client.get("/health", headers={"Origin": "https://evil.example"}).headers
    )
    app = create_app(Settings(model_dir=str(tiny_model_dir), cors_origins=("https://newsroom.example",)))
    with TestClient(app) as c:
        ok = c.options("/v1/classify", headers=preflight | {"Origin": "https://newsroom.example"})
        assert ok.headers["access-control-allow-origin"] == "https://newsroom.example"
        assert "access-control-allow-origin" not in c.options("/v1/classify", headers=preflight).headers


def test_an_unexpected_error_is_a_500_with_a_request_id_and_no_details(tiny_model_dir, caplog):
    class Exploding(Classifier):
        def predict(self, texts, contexts=None):
            raise RuntimeError("secret detail in /srv/private/file.py")

    def loader(path: str) -> Classifier:
        clf = Classifier.load(path)
        return Exploding(clf.backend, clf.tokenizer, clf.info)

    app = create_app(Settings(model_dir=str(tiny_model_dir)), loader=loader)
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR):
        while c.get("/health").status_code != 200:
            time.sleep(0.05)
        response = c.post("/v1/classify", json={"sentences": ["x"]})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal error" and len(body["request_id"]) == 32
    assert response.headers["x-request-id"] == body["request_id"]
    assert "secret" not in response.text and "/srv" not in response.text and "Traceback" not in response.text
    assert body["request_id"] in caplog.text and "secret detail" in caplog.text


def test_every_response_carries_a_request_id(client):
    assert len(client.get("/health").headers["x-request-id"]) == 32
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/health", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"


def test_a_full_queue_answers_503_with_retry_after(tiny_model_dir):
    gate = threading.Event()

    class Gated(Classifier):
        def predict(self, texts, contexts=None):
            gate.wait(30)
            return super().predict(texts, contexts)

    def loader(path: str) -> Classifier:
        clf = Classifier.load(path)
        return Gated(clf.backend, clf.tokenizer, clf.info)

    app = create_app(Settings(model_dir=str(tiny_model_dir), max_queue=1, batch_wait_ms=1), loader=loader)
    with TestClient(app) as c:
        while c.get("/health").status_code != 200:
            time.sleep(0.05)
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(c.post("/v1/classify", json={"sentences": ["x"]}).status_code)
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
            time.sleep(0.3)  # the first is held by the model, the second fills the queue
        busy = c.post("/v1/classify", json={"sentences": ["x"]})
        gate.set()
        for t in threads:
            t.join(30)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "busy" in busy.json()["error"]
    assert sorted(results) == [200, 200]


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits(tiny_model_dir):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(
        [
            sys.executable,
            str(Path(__file__).with_name("slow_server.py")),
            str(tiny_model_dir),
            str(port),
            "2",
        ],
        port,
    )
    in_flight: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: in_flight.setdefault(
            "r", httpx.post(f"{base}/v1/classify", json={"sentences": ["Police said so."]}, timeout=30)
        )
    )
    thread.start()
    time.sleep(0.7)  # the request is inside the model's 2-second call
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=2)
    thread.join(30)
    assert in_flight["r"].status_code == 200
    # uvicorn re-raises SIGTERM after its clean shutdown, so the exit status names the signal.
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    assert time.monotonic() - sent < 12
    log = proc.stdout.read() if proc.stdout else ""
    assert "Waiting for application shutdown" in log and "Application shutdown complete" in log


def test_settings_from_the_environment(tmp_path, tiny_model_dir):
    keys = tmp_path / "keys"
    keys.write_text(f"{KEYS[0]}\n{KEYS[1]}\n")
    env = {
        "CLAIMLENS_MODEL": str(tiny_model_dir),
        "CLAIMLENS_API_KEYS_FILE": str(keys),
        "CLAIMLENS_MAX_QUEUE": "8",
        "CLAIMLENS_CORS_ORIGINS": "https://a.example, https://b.example",
    }
    settings = Settings.from_env(env)
    assert settings.api_keys == KEYS and settings.max_queue == 8
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    with pytest.raises(ValueError, match="CLAIMLENS_MAX_QUEUE must be an integer"):
        Settings.from_env(env | {"CLAIMLENS_MAX_QUEUE": "many"})
    with pytest.raises(ValueError, match="backend must be one of"):
        Settings.from_env(env | {"CLAIMLENS_BACKEND": "gpu"})

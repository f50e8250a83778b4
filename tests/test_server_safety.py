"""Hostile input, authentication, CORS, request ids, queue limits, timeouts, graceful shutdown
and settings."""

import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from benchmarks.harness import Server, free_port, run_server, start_server
from inference.app import create_app
from inference.predict import Classifier
from inference.settings import Settings, load_settings

KEYS = ("k-0123456789abcdef-one", "k-0123456789abcdef-two")


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir):
    with run_server(tiny_model_dir, env={"CLAIMLENS_API_KEYS": ",".join(KEYS)}, log_level="info") as running:
        yield running


def test_api_keys_guard_every_route_but_health(keyed_server):
    base = keyed_server.base
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
            assert len(response.headers["x-request-id"]) == 32
    for key in KEYS:
        ok = httpx.post(f"{base}/v1/classify", json=body, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200


def test_keys_never_reach_the_log(keyed_server):
    base = keyed_server.base
    httpx.post(
        f"{base}/v1/classify", json={"sentences": ["x"]}, headers={"Authorization": f"Bearer {KEYS[0]}"}
    )
    httpx.get(f"{base}/v1/model", headers={"Authorization": "Bearer k-guess-0123456789abcdef"})
    keyed_server.stop()
    log = keyed_server.log()
    assert "GET /v1/model" in log  # the access log is there ...
    assert KEYS[0] not in log and KEYS[1] not in log and "k-guess" not in log  # ... the keys are not


def test_weak_api_keys_are_refused_without_echoing_them(tiny_model_dir):
    with pytest.raises(ValueError, match="at least 16") as refused:
        Settings(model_dir=str(tiny_model_dir), api_keys=("short-secret",))
    assert "short-secret" not in str(refused.value)
    with pytest.raises(ValueError, match="at least 16") as refused:
        load_settings(model_dir=str(tiny_model_dir), api_keys=("short-secret",))
    assert "short-secret" not in str(refused.value)
    assert "k-0123" not in repr(Settings(model_dir=str(tiny_model_dir), api_keys=KEYS))


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    with TestClient(create_app(Settings(model_dir=str(tiny_model_dir)))) as c:
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
    too_big = client.post("/v1/classify", content=b"x" * 1_000_001, headers={"X-Request-ID": "big-1"})
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "big-1"


def gated_app(model_dir: Path, **settings: object) -> tuple[TestClient, threading.Event, threading.Event]:
    """An app whose model, once a request is inside it (``entered``), waits for ``gate``."""
    gate, entered = threading.Event(), threading.Event()

    class Gated(Classifier):
        def predict(self, texts, contexts=None):
            entered.set()
            assert gate.wait(30), "the test never opened the gate"
            return super().predict(texts, contexts)

    def loader(path: str) -> Classifier:
        clf = Classifier.load(path)
        return Gated(clf.backend, clf.tokenizer, clf.info)

    app = create_app(Settings(model_dir=str(model_dir), **settings), loader=loader)  # type: ignore[arg-type]
    return TestClient(app), gate, entered


def post_in_thread(client: TestClient, answers: queue.Queue) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: answers.put(client.post("/v1/classify", json={"sentences": ["x"]}))
    )
    thread.start()
    return thread


@pytest.mark.parametrize("batch_wait_ms", [0, 1])  # micro-batching off and on
def test_a_full_queue_answers_503_with_retry_after(tiny_model_dir, batch_wait_ms):
    client, gate, entered = gated_app(tiny_model_dir, max_queue=1, batch_wait_ms=batch_wait_ms)
    answers: queue.Queue[httpx.Response] = queue.Queue()
    with client:
        threads = [post_in_thread(client, answers)]
        assert entered.wait(30)  # the first request is inside the model
        threads += [post_in_thread(client, answers) for _ in range(2)]  # one waits, one is too many
        busy = answers.get(timeout=30)  # while the model is held only a refusal can come back
        gate.set()
        served = [answers.get(timeout=30).status_code for _ in range(2)]
        for t in threads:
            t.join(30)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "busy" in busy.json()["error"]
    assert served == [200, 200]


@pytest.mark.parametrize("batch_wait_ms", [0, 1])
def test_a_request_that_waits_too_long_gets_503(tiny_model_dir, batch_wait_ms):
    client, gate, entered = gated_app(tiny_model_dir, request_timeout_s=0.3, batch_wait_ms=batch_wait_ms)
    answers: queue.Queue[httpx.Response] = queue.Queue()
    with client:
        threads = [post_in_thread(client, answers)]
        assert entered.wait(30)
        threads.append(post_in_thread(client, answers))
        late = [answers.get(timeout=30) for _ in range(2)]  # both give up while the model is held
        gate.set()
        for t in threads:
            t.join(30)
        assert client.post("/v1/classify", json={"sentences": ["x"]}).status_code == 200  # still serving
    for response in late:
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "timed out" in response.json()["error"]


def refused_within(server: Server, timeout_s: float) -> bool:
    """Whether new connections to ``server`` are refused within ``timeout_s``, it still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{server.base}/health", timeout=1)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            pass
        try:
            server.proc.wait(timeout=0.05)  # the pause between tries; exiting here is a failure
            return False
        except subprocess.TimeoutExpired:
            pass
    return False


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits(tiny_model_dir):
    entered_r, entered_w = os.pipe()  # the server says: a request is inside the model
    release_r, release_w = os.pipe()  # the test says: let it finish
    port = free_port()
    slow = Path(__file__).with_name("slow_server.py")
    command = [sys.executable, str(slow), str(tiny_model_dir), str(port), str(entered_w), str(release_r)]
    try:
        with start_server(command, port, pass_fds=(entered_w, release_r)) as server:
            answers: queue.Queue[httpx.Response] = queue.Queue()
            body = {"sentences": ["Police said so."]}
            in_flight = threading.Thread(
                target=lambda: answers.put(httpx.post(f"{server.base}/v1/classify", json=body, timeout=30))
            )
            in_flight.start()
            assert select.select([entered_r], [], [], 30)[0], "the request never reached the model"
            sent = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert refused_within(server, 10)  # while the request is still in the model
            os.write(release_w, b"1")
            assert answers.get(timeout=30).status_code == 200
            in_flight.join(30)
            # uvicorn re-raises SIGTERM after its clean shutdown, so the exit status names the signal.
            assert server.proc.wait(timeout=15) in (0, -signal.SIGTERM)
            assert time.monotonic() - sent < 12
            log = server.log()
    finally:
        for fd in (entered_r, entered_w, release_r, release_w):
            os.close(fd)
    assert "Waiting for application shutdown" in log and "Application shutdown complete" in log


def test_settings_from_the_environment(tmp_path, tiny_model_dir, monkeypatch):
    keys = tmp_path / "keys"
    keys.write_text(f"{KEYS[0]}\n\n{KEYS[1]}\n")
    monkeypatch.setenv("CLAIMLENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("CLAIMLENS_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("CLAIMLENS_MAX_QUEUE", "8")
    monkeypatch.setenv("CLAIMLENS_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("CLAIMLENS_SPEAKER_MODEL", "models/speakers")
    settings = load_settings()
    assert settings.model_dir == str(tiny_model_dir) and settings.speaker_model_dir == "models/speakers"
    assert load_settings(speaker_model_dir="other").speaker_model_dir == "other"  # `serve --speakers`
    assert settings.api_keys == KEYS and settings.max_queue == 8
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert load_settings(max_queue=3, model_dir="other").max_queue == 3  # CLI flags win over the environment
    with pytest.raises(Exception, match="frozen"):
        settings.max_queue = 1


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CLAIMLENS_MAX_QUEUE", "many", "CLAIMLENS_MAX_QUEUE: Input should be a valid integer"),
        ("CLAIMLENS_MAX_QUEUE", "0", "CLAIMLENS_MAX_QUEUE: Input should be greater than or equal to 1"),
        ("CLAIMLENS_THREADS", "two", "CLAIMLENS_THREADS: Input should be a valid integer"),
        ("CLAIMLENS_BACKEND", "gpu", "CLAIMLENS_BACKEND: backend must be one of torch, onnx"),
        ("CLAIMLENS_QUANTIZE", "int8", "quantize=int8 needs backend=onnx"),
        ("CLAIMLENS_API_KEYS_FILE", "/nonexistent/keys", "cannot read the API keys file"),
        ("CLAIMLENS_MODEL", "", "CLAIMLENS_MODEL: String should have at least 1 character"),
        ("CLAIMLENS_SPEAKER_MODEL", "", "CLAIMLENS_SPEAKER_MODEL: String should have at least 1 character"),
    ],
)
def test_bad_settings_name_their_variable(tiny_model_dir, monkeypatch, variable, value, message):
    monkeypatch.setenv("CLAIMLENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        load_settings()


def test_a_missing_model_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("CLAIMLENS_MODEL", raising=False)
    with pytest.raises(ValueError, match="set CLAIMLENS_MODEL"):
        load_settings()
    with pytest.raises(ValueError, match="speaker_model_dir: String should have at least 1 character"):
        load_settings(model_dir="models/default", speaker_model_dir="")

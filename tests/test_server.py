"""The real server: uvicorn on a free loopback port, every route, good and bad input, and a
model that cannot load stopping it at start-up."""

import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict

import httpx
import pytest
from fastapi.testclient import TestClient

from benchmarks.harness import ROOT, free_port, run_server
from inference.app import ModelLoadError, create_app
from inference.inputs import previous_sentences
from inference.labels import LABELS
from inference.predict import Classifier, split_article
from inference.settings import Settings
from inference.speakers import SpeakerExtractor
from tests.conftest import SPEAKER_ARTICLE

SPEAKER_FIELDS = ("speaker", "cue", "speaker_type", "speaker_in_previous", "antecedent")


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with run_server(tiny_model_dir) as running:
        yield running.base


@pytest.fixture(scope="module")
def speaker_server(official_model_dir, tiny_speaker_model_dir):
    # The speaker model from the environment here; the --speakers flag is tried on a broken one below.
    with run_server(
        official_model_dir, env={"CLAIMLENS_SPEAKER_MODEL": str(tiny_speaker_model_dir)}
    ) as running:
        yield running.base


@pytest.fixture(scope="module")
def context_server(sharp_context_model_dir):
    with run_server(sharp_context_model_dir) as running:
        yield running.base


def test_health_and_model_info(server):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/v1/model").json()
    assert info["name"] == "unit" and info["labels"] == list(LABELS)
    assert info["base_model"] == "tiny-random" and info["config_digest"].startswith("sha256:")
    assert info["backend"] == "torch" and "dev" in info["metrics"]
    assert info["speaker_model"] is None


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


def test_analyze_reads_each_sentence_after_the_one_before(context_server, sharp_context_model_dir):
    text = "Police said two men were held. The rebels denied it.\n\nIt rained."
    got = httpx.post(f"{context_server}/v1/analyze", json={"text": text}).json()["sentences"]
    texts = [s.text for s in split_article(text)]
    want = Classifier.load(sharp_context_model_dir).predict(texts, previous_sentences(texts))
    assert [s["sentence"] for s in got] == texts
    for g, w in zip(got, want, strict=True):
        assert g["scores"] == pytest.approx(w.scores, abs=1e-5)


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


def test_without_a_speaker_model_the_speaker_fields_are_null(server):
    sentences = httpx.post(f"{server}/v1/analyze", json={"text": SPEAKER_ARTICLE}).json()["sentences"]
    assert len(sentences) == 3
    for s in sentences:
        assert {k: s[k] for k in SPEAKER_FIELDS} == dict.fromkeys(SPEAKER_FIELDS)
        assert "explanation" not in s  # still left out when not asked for


def test_analyze_gives_each_attributed_sentence_its_speaker_and_cue(
    speaker_server, official_model_dir, tiny_speaker_model_dir
):
    assert httpx.get(f"{speaker_server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{speaker_server}/v1/model").json()
    assert info["speaker_model"] == {"name": "unit-speakers", "base_model": "tiny-random", "max_length": 64}
    got = httpx.post(f"{speaker_server}/v1/analyze", json={"text": SPEAKER_ARTICLE}).json()["sentences"]
    want = Classifier.load(official_model_dir).analyze(SPEAKER_ARTICLE, speakers=tiny_speaker_model_dir)
    commander = {"text": "Commander Zorblatov", "start": 0, "end": 19}
    assert [(s["speaker"], s["speaker_in_previous"]) for s in got] == [
        (commander, False),
        (commander, True),
        (None, None),
    ]
    for g, w in zip(got, want, strict=True):
        expected = asdict(w.attribution) if w.attribution else dict.fromkeys(SPEAKER_FIELDS)
        assert {k: g[k] for k in SPEAKER_FIELDS} == expected
        assert (g["sentence"], g["label"]) == (w.sentence, w.label)
        for span in (g["speaker"], g["cue"]):
            assert span is None or SPEAKER_ARTICLE[span["start"] : span["end"]] == span["text"]
    assert got[0]["cue"]["text"] == "said" and got[0]["speaker_type"] == "official"


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


def test_health_is_503_until_the_lifespan_has_loaded_the_model(tiny_model_dir):
    client = TestClient(create_app(Settings(model_dir=str(tiny_model_dir))))
    # Outside `with`, the lifespan has not run: the app is up, the model is not.
    assert client.get("/health").status_code == 503
    assert client.get("/health").json() == {"status": "loading"}
    refused = client.post("/v1/classify", json={"sentences": ["a"]})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    with client:  # start-up returns once the model is loaded
        assert client.get("/health").json() == {"status": "ok"}
        assert client.post("/v1/classify", json={"sentences": ["a"]}).status_code == 200


def test_a_loader_that_fails_fails_the_start_up(tiny_model_dir):
    def broken(path: str) -> Classifier:
        raise ValueError("weights are corrupt")

    with (
        pytest.raises(ModelLoadError, match="weights are corrupt"),
        TestClient(create_app(Settings(model_dir=str(tiny_model_dir)), loader=broken)),
    ):
        pass


def test_health_is_503_until_the_speaker_model_is_loaded_too(tiny_model_dir, tiny_speaker_model_dir):
    classifier_loaded, speakers_entered, gate, release = (threading.Event() for _ in range(4))

    def classifier_loader(path: str) -> Classifier:
        clf = Classifier.load(path)
        classifier_loaded.set()
        return clf

    def speaker_loader(path: str) -> SpeakerExtractor:
        speakers_entered.set()
        assert gate.wait(60), "the test never let the speaker model load"
        return SpeakerExtractor.load(path)

    settings = Settings(model_dir=str(tiny_model_dir), speaker_model_dir=str(tiny_speaker_model_dir))
    app = create_app(settings, loader=classifier_loader, speaker_loader=speaker_loader)
    answers: queue.Queue[httpx.Response] = queue.Queue()

    def start() -> None:
        with TestClient(app) as client:  # returns once the lifespan has loaded both
            answers.put(client.get("/health"))
            release.wait(60)

    starting = threading.Thread(target=start)
    starting.start()
    try:
        assert speakers_entered.wait(60) and classifier_loaded.is_set()
        # A client without the lifespan sees the app as the starting one leaves it so far.
        response = TestClient(app).get("/health")
        assert response.status_code == 503 and response.json() == {"status": "loading"}
        gate.set()
        assert answers.get(timeout=60).json() == {"status": "ok"}
    finally:
        gate.set()
        release.set()
        starting.join(60)


def test_a_speaker_loader_that_fails_fails_the_start_up(tiny_model_dir, tmp_path):
    settings = Settings(model_dir=str(tiny_model_dir), speaker_model_dir=str(tmp_path))
    with (
        pytest.raises(ModelLoadError, match=f"cannot load the speaker model in {tmp_path}: .*incomplete"),
        TestClient(create_app(settings)),
    ):
        pass


def _serve(model_dir, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "inference",
        "serve",
        "--model",
        str(model_dir),
        "--port",
        str(free_port()),
    ]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_a_broken_model_dir_stops_the_server(tmp_path):
    proc = _serve(tmp_path)
    assert proc.returncode != 0
    assert "incomplete" in proc.stderr


def test_a_missing_onnx_export_stops_the_server(tiny_model_dir, tmp_path):
    # Before: the server came up and answered 503 "failed to load" forever.
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "unit")
    proc = _serve(model_dir, "--backend", "onnx")
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("claimlens serve: error: ") and "claimlens export" in last


def test_bad_thread_settings_stop_the_server(tiny_model_dir):
    proc = _serve(tiny_model_dir, "--threads", "0")
    assert proc.returncode == 2
    assert "claimlens serve: error: threads: Input should be greater than or equal to 1" in proc.stderr


def test_a_label_model_as_speakers_stops_the_server(tiny_model_dir):
    proc = _serve(tiny_model_dir, "--speakers", str(tiny_model_dir))
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("claimlens serve: error: ") and "is not a speaker model" in last

"""Why this label: integrated gradients in words, in the library, over HTTP and on the command line."""

import json
import random
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from inference.app import MAX_EXPLAINED_SENTENCES, create_app
from inference.backends import OnnxBackend
from inference.explain import Explainer
from inference.inputs import InputBuilder
from inference.labels import LABELS
from inference.predict import Classifier
from inference.settings import Settings
from tests.conftest import SAMPLE, tiny_config

FILLER = [
    "the",
    "town",
    "ministry",
    "report",
    "police",
    "men",
    "market",
    "they",
    "three",
    "historic",
    "rebels",
    "centre",
    "it",
    "is",
    "a",
]
KEYWORDS = {"claim": "captured", "denial": "denied", "official_statement": "arrested", "other": None}
CASES = [  # (sentence, context, its keyword)
    ("The ministry denied the report.", "Police arrested three men.", "denied"),
    ("Rebels captured the town.", None, "captured"),
    ("Police arrested three men.", "The ministry denied it.", "arrested"),
]


def _sentence(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, rng.randint(3, 7))
    if KEYWORDS[label]:
        words.insert(rng.randint(0, len(words)), KEYWORDS[label])
    return " ".join(words).capitalize() + "."


@pytest.fixture(scope="module")
def keyword_model_dir(tmp_path_factory):
    """A tiny context model trained (seconds) to read one keyword per label; no keyword: other."""
    import torch

    from training.modeling import tiny_model, tiny_tokenizer
    from training.save import save_model_dir

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a loaded machine
    try:
        torch.manual_seed(0)
        rng = random.Random(0)
        tokenizer = tiny_tokenizer([t for t, _ in SAMPLE] * 3)
        model = tiny_model(len(tokenizer), max_length=32, dropout=0.0)
        build = InputBuilder(tokenizer, 32, context=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(200):
            labels = rng.sample(LABELS * 4, 16)  # balanced batches: every keyword is learnt
            contexts = [_sentence(rng, rng.choice(LABELS)) if rng.random() < 0.7 else None for _ in labels]
            arrays = build.batch(build([_sentence(rng, label) for label in labels], contexts))
            batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
            loss = model(**batch, labels=torch.tensor([LABELS.index(label) for label in labels])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    config = tiny_config(name="keywords", model={"base": "tiny-random", "max_length": 32, "context": True})
    return save_model_dir(model, tokenizer, config, {}, tmp_path_factory.mktemp("models") / "keywords")


@pytest.fixture(scope="module")
def clf(keyword_model_dir):
    return Classifier.load(keyword_model_dir)


def _without(text: str, start: int, end: int) -> str:
    return " ".join((text[:start] + text[end:]).split())


def test_spans_are_the_words_of_the_sentence_and_context(clf):
    texts = ["The ministry denied the report, calling it propaganda.", "Ceasefire talks (again) stalled."]
    contexts = ["Rebels said they had captured the town.", None]
    for text, context, e in zip(texts, contexts, clf.explain(texts, contexts), strict=True):
        source = {"sentence": text, "context": context or ""}
        for span in e.spans:
            assert source[span.segment][span.start : span.end] == span.text
        for segment, words in source.items():
            mine = [s for s in e.spans if s.segment == segment]
            assert [s.start for s in mine] == sorted(s.start for s in mine)
            # Every character but spaces is in exactly one word, word pieces merged.
            assert "".join(s.text for s in mine) == "".join(words.split())
    first, second = clf.explain(texts, contexts)
    assert [s.text for s in first.spans if s.segment == "sentence"][4:6] == ["report", ","]
    assert "Ceasefire" in [s.text for s in second.spans]  # unknown to the vocabulary: many pieces, one word
    assert second.context_share == 0.0 and 0 < first.context_share < 1


def test_the_keyword_drives_the_label_and_removing_it_moves_the_score_most(clf):
    for text, context, keyword in CASES:
        prediction = clf.predict([text], [context], explain=True)[0]
        e = prediction.explanation
        assert e is not None and e.label == prediction.label
        assert e.top(1)[0].text == keyword
        assert e.score == pytest.approx(prediction.score, abs=1e-5)
        sentence = [s for s in e.spans if s.segment == "sentence"]
        top = max(sentence, key=lambda s: abs(s.score))
        low = min(sentence, key=lambda s: abs(s.score))
        drop_top = clf.predict([_without(text, top.start, top.end)], [context])[0].scores[e.label]
        drop_low = clf.predict([_without(text, low.start, low.end)], [context])[0].scores[e.label]
        assert abs(prediction.score - drop_top) > 0.3 > 10 * abs(prediction.score - drop_low)
        assert sum(s.score for s in e.spans) - (e.score - e.baseline_score) == pytest.approx(
            e.delta, abs=1e-4
        )


def test_with_enough_steps_the_words_add_up_to_the_rise_over_the_baseline(clf):
    # Completeness, the defining property of integrated gradients: exact in the limit of steps.
    fine = Explainer(clf.backend.model, clf.tokenizer, clf.info, steps=400)
    labels = [p.label for p in clf.predict([c[0] for c in CASES], [c[1] for c in CASES])]
    for e in fine.explain([c[0] for c in CASES], [c[1] for c in CASES], labels):
        assert abs(e.delta) < 0.01
        assert sum(s.score for s in e.spans) == pytest.approx(e.score - e.baseline_score, abs=0.01)


def test_explanations_are_deterministic_and_independent_of_the_batch(clf):
    texts = [c[0] for c in CASES] + ["The town is a historic market centre."]
    contexts = [c[1] for c in CASES] + [None]
    together = clf.explain(texts, contexts)
    assert together == clf.explain(texts, contexts)
    assert [clf.explain([t], [c])[0] for t, c in zip(texts, contexts, strict=True)] == together


def test_explain_another_label_and_bad_input(clf):
    text = CASES[0][0]
    assert clf.explain([text], labels=["claim"])[0].label == "claim"
    with pytest.raises(ValueError, match="unknown labels"):
        clf.explain([text], labels=["rumour"])
    with pytest.raises(ValueError, match="one label per text"):
        clf.explain([text, text], labels=["claim"])
    with pytest.raises(ValueError, match="is empty"):
        clf.explain([" "])


def test_explanations_only_when_asked_and_scores_unchanged(clf):
    texts, contexts = [c[0] for c in CASES], [c[1] for c in CASES]
    plain, explained = clf.predict(texts, contexts), clf.predict(texts, contexts, explain=True)
    assert all(p.explanation is None for p in plain)
    assert [replace(p, explanation=None) for p in explained] == plain
    sentences = clf.analyze(" ".join(texts), explain=True)
    assert [s.explanation.label for s in sentences] == [s.label for s in sentences]
    assert all(s.explanation is None for s in clf.analyze(" ".join(texts)))


def test_a_truncated_sentence_is_explained_by_the_words_the_model_read(clf):
    text = "The ministry denied the report " * 12
    e = clf.explain([text.strip()])[0]
    assert clf.predict([text.strip()])[0].truncated
    assert e.spans[-1].end < len(text.strip()) / 2
    assert all(text[s.start : s.end] == s.text for s in e.spans)


def test_onnx_classifier_loads_the_torch_weights_to_explain(keyword_model_dir, clf, tmp_path):
    from inference.export import export_onnx

    export_onnx(keyword_model_dir)
    onnx = Classifier.load(keyword_model_dir, backend="onnx")
    texts, contexts = [c[0] for c in CASES], [c[1] for c in CASES]
    assert onnx.explain(texts, contexts) == clf.explain(texts, contexts)
    # Weights that are not there: a clear error, not a crash.
    elsewhere = Classifier(
        OnnxBackend(keyword_model_dir / "model.onnx"), onnx.tokenizer, replace(onnx.info, path=str(tmp_path))
    )
    assert elsewhere.predict(texts)[0].label in LABELS
    with pytest.raises(ValueError, match=r"explanations need the PyTorch weights \(model.safetensors\)"):
        elsewhere.explain(texts)


def test_api_explains_only_when_asked(keyword_model_dir, clf):
    text, context, keyword = CASES[0]
    with TestClient(create_app_for(keyword_model_dir)) as client:
        plain = client.post("/v1/classify", json={"sentences": [text], "contexts": [context]}).json()
        assert "explanation" not in plain["predictions"][0]
        asked = client.post(
            "/v1/classify", json={"sentences": [text], "contexts": [context], "explain": True}
        )
        assert asked.status_code == 200, asked.text
        e = asked.json()["predictions"][0]["explanation"]
        assert e == json.loads(json.dumps(_as_dict(clf.explain([text], [context])[0])))
        assert max(e["spans"], key=lambda s: s["score"])["text"] == keyword
        article = " ".join(c[0] for c in CASES)
        rows = client.post("/v1/analyze", json={"text": article, "explain": True}).json()["sentences"]
        for row in rows:
            span = row["explanation"]["spans"][0]
            assert row["explanation"]["label"] == row["label"]
            assert row["sentence"][span["start"] : span["end"]] == span["text"]
        rows = client.post("/v1/analyze", json={"text": article}).json()["sentences"]
        assert all("explanation" not in row for row in rows)
        refused = client.post("/v1/classify", json={"sentences": [text], "explain": "yes"})
        assert refused.status_code == 422 and "explain" in refused.json()["error"]
        many = ["It rained."] * (MAX_EXPLAINED_SENTENCES + 1)
        too_many = client.post("/v1/classify", json={"sentences": many, "explain": True})
        assert too_many.status_code == 422
        assert f"explain covers at most {MAX_EXPLAINED_SENTENCES} sentences" in too_many.json()["error"]
        assert client.post("/v1/classify", json={"sentences": many}).status_code == 200


def create_app_for(model_dir):
    return create_app(Settings(model_dir=str(model_dir)))


def _as_dict(explanation) -> dict:
    from dataclasses import asdict

    return asdict(explanation)


def _cli(capsys, *args) -> tuple[int, str]:
    """The real command line, in this process (a subprocess per call costs a torch import)."""
    from inference.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def test_cli_explain_flag(keyword_model_dir, tmp_path, capsys):
    code, out = _cli(capsys, "predict", "--model", keyword_model_dir, "Rebels captured the town.")
    assert code == 0 and "explanation" not in json.loads(out)
    code, out = _cli(
        capsys, "predict", "--model", keyword_model_dir, "--explain", "Rebels captured the town."
    )
    row = json.loads(out)
    assert code == 0 and row["explanation"]["label"] == row["label"] == "claim"
    assert max(row["explanation"]["spans"], key=lambda s: s["score"])["text"] == "captured"
    article = tmp_path / "article.txt"
    article.write_text("The ministry denied the report. Rebels captured the town.")
    code, out = _cli(
        capsys, "analyze", "--model", keyword_model_dir, "--explain", "--color", "never", article
    )
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[0].startswith("denial") and lines[1].split()[:2] == ["why:", "denied"]
    assert lines[2].startswith("claim") and lines[3].split()[:2] == ["why:", "captured"]
    code, out = _cli(
        capsys, "analyze", "--model", keyword_model_dir, "--explain", "--format", "jsonl", article
    )
    assert code == 0 and all("explanation" in json.loads(line) for line in out.splitlines())
    code, out = _cli(capsys, "analyze", "--model", keyword_model_dir, "--explain", "--format", "csv", article)
    assert code == 0 and out.splitlines()[0].endswith(",why") and "denied +" in out
    code, out = _cli(capsys, "analyze", "--model", keyword_model_dir, "--color", "never", article)
    assert code == 0 and "why:" not in out and len(out.splitlines()) == 2

import threading

import pytest

from inference import LABELS, Classifier, Prediction, SentencePrediction, analyze, predict
from tests.conftest import SAMPLE

TEXTS = [t for t, _ in SAMPLE] + [
    "Short.",
    "A much longer sentence about the ministry and the army and the police, " * 3,
]


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    return Classifier.load(tiny_model_dir, batch_size=2)


def test_one_honest_return_type(clf):
    result = clf.predict(TEXTS)
    assert len(result) == len(TEXTS)
    for p in result:
        assert isinstance(p, Prediction)
        assert p.label in LABELS and set(p.scores) == set(LABELS)
        assert p.score == max(p.scores.values()) == p.scores[p.label]
        assert sum(p.scores.values()) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(Exception, match=r"frozen|cannot assign"):
        result[0].label = "claim"  # type: ignore[misc]


def test_order_is_kept_whatever_the_batching(clf):
    together = clf.predict(TEXTS)
    alone = [clf.predict([t])[0] for t in TEXTS]
    reversed_ = clf.predict(TEXTS[::-1])[::-1]
    for a, b, c in zip(together, alone, reversed_, strict=True):
        assert a.label == b.label == c.label
        assert a.scores == pytest.approx(b.scores, abs=1e-5)
        assert a.scores == pytest.approx(c.scores, abs=1e-5)


def test_module_level_predict_caches_the_model(tiny_model_dir):
    first = predict(TEXTS[:2], model=tiny_model_dir)
    assert predict(TEXTS[:2], model=str(tiny_model_dir)) == first


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("one string", "list of strings"),
        ([1, 2], r"texts\[0\] must be a string"),
        (["ok", "  "], r"texts\[1\] is empty"),
    ],
)
def test_bad_input_is_a_value_error(clf, bad, message):
    with pytest.raises(ValueError, match=message):
        clf.predict(bad)


def test_empty_list_gives_empty_result(clf):
    assert clf.predict([]) == []


def test_analyze_keeps_offsets(clf, tiny_model_dir):
    text = 'Rebels Claim Town\n\nThe group said it held the town. "We will stay," a commander said. Police denied it.'
    result = analyze(text, model=tiny_model_dir)
    assert [r.sentence for r in result] == [
        "Rebels Claim Town",
        "The group said it held the town.",
        '"We will stay," a commander said.',
        "Police denied it.",
    ]
    for r in result:
        assert isinstance(r, SentencePrediction)
        assert text[r.start : r.end] == r.sentence
    with pytest.raises(ValueError, match="empty"):
        clf.analyze("   ")


def test_context_changes_predictions_only_for_context_models(tiny_context_model_dir, clf):
    ctx = Classifier.load(tiny_context_model_dir)
    texts = ["They must stop their attacks."]
    with_ctx = ctx.predict(texts, ["A NATO official told Reuters the mission goes on."])[0]
    without = ctx.predict(texts, [None])[0]
    assert with_ctx.scores != without.scores
    # A model trained without context ignores it.
    assert clf.predict(texts, ["anything"])[0] == clf.predict(texts)[0]
    with pytest.raises(ValueError, match="contexts"):
        ctx.predict(texts, ["a", "b"])


def test_concurrent_callers_get_their_own_answers(clf):
    expected = {t: clf.predict([t])[0] for t in TEXTS}
    errors: list[str] = []

    def worker(text: str) -> None:
        for _ in range(5):
            if clf.predict([text])[0] != expected[text]:
                errors.append(text)

    threads = [threading.Thread(target=worker, args=(t,)) for t in TEXTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_model_left_in_train_mode_still_predicts_without_dropout(tiny_model_dir):
    # The training loop shares its model with a Classifier and switches it back to train mode
    # every epoch; dev scores must not be drawn with dropout on.
    from inference.model import load_model_dir

    model, tokenizer, info = load_model_dir(tiny_model_dir)
    classifier = Classifier(model, tokenizer, info)
    expected = classifier.predict(TEXTS)
    model.train()
    for _ in range(2):
        again = classifier.predict(TEXTS)
        for a, b in zip(expected, again, strict=True):
            assert a.scores == pytest.approx(b.scores, abs=1e-6)


def test_a_context_model_batches_by_sentence_and_context_length(tiny_context_model_dir):
    # A pair is padded to its longest sentence-plus-context: sentences of one length whose
    # contexts differ a lot belong in different batches.
    clf = Classifier.load(tiny_context_model_dir, batch_size=64)
    widths: list[int] = []

    class Recording:
        name, input_names = clf.backend.name, clf.backend.input_names

        def __call__(self, inputs, forward=clf.backend):
            widths.append(inputs["input_ids"].shape[1])
            return forward(inputs)

    clf.backend = Recording()
    texts = ["Police said so."] * 8
    contexts = ["Yes.", "The ministry and the army and the police said so at length. " * 4] * 4
    together = clf.predict(texts, contexts)
    assert len(widths) == 2 and min(widths) < max(widths) / 2
    alone = [clf.predict([t], [c])[0] for t, c in zip(texts, contexts, strict=True)]
    for a, b in zip(together, alone, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)

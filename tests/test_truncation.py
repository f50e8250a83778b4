"""Over-long sentences are classified from their beginning, and say so."""

from inference.predict import Classifier

LONG = "The ministry said the army and the police had arrested rebels in the town. " * 10


def test_truncated_is_reported_only_when_the_sentence_was_cut(tiny_model_dir):
    clf = Classifier.load(tiny_model_dir)  # max_length 32 tokens
    short, long = clf.predict(["Police said so.", LONG])
    assert short.truncated is False and long.truncated is True


def test_context_truncation_does_not_count(tiny_context_model_dir):
    clf = Classifier.load(tiny_context_model_dir)
    [p] = clf.predict(["Police said so."], [LONG])
    assert p.truncated is False  # the long context was trimmed, the sentence was whole
    [p] = clf.predict([LONG], ["Police said so."])
    assert p.truncated is True


def test_analyze_reports_truncation_per_sentence(tiny_model_dir):
    clf = Classifier.load(tiny_model_dir)
    result = clf.analyze(f"Police said so. {LONG.replace('. ', ', ')}")
    assert [s.truncated for s in result] == [False, True]

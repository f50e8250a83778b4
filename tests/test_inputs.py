"""inference/inputs.py: how a sentence and its context become model input, and which sentence is previous."""

import pytest
from transformers import AutoTokenizer

from inference.inputs import InputBuilder, doc_key, previous_sentences
from inference.predict import Classifier
from inference.records import Example
from tests.conftest import SAMPLE
from training.data import encode
from training.modeling import resolve_base, tiny_tokenizer

WORDS = [f"s{i}" for i in range(40)] + [f"c{i}" for i in range(40)]


@pytest.fixture(scope="module")
def word_tokenizer():
    """One token per word ``s0``..``s39``, ``c0``..``c39``: token counts are word counts."""
    return tiny_tokenizer([" ".join(WORDS)])


@pytest.fixture(scope="module")
def minilm_tokenizer():
    # The packaged MiniLM's real WordPiece vocabulary; only the tokenizer is loaded, no weights.
    return AutoTokenizer.from_pretrained(resolve_base("minilm"), local_files_only=True)


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def tokens(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


def test_context_is_trimmed_from_its_far_side_and_the_sentence_is_whole(word_tokenizer):
    build = InputBuilder(word_tokenizer, max_length=16, context=True)  # 13 tokens after 3 specials
    (enc,) = build([words("s", 5)], [words("c", 20)])
    # The 8 context words nearest the sentence (its end) are kept; c0..c11 are cut.
    assert tokens(word_tokenizer, enc.input_ids) == [
        "[CLS]",
        *words("s", 5).split(),
        "[SEP]",
        *[f"c{i}" for i in range(12, 20)],
        "[SEP]",
    ]
    assert enc.token_type_ids == [0] * 7 + [1] * 9
    assert enc.truncated is False


@pytest.mark.parametrize(
    ("n_sentence", "truncated"), [(1, False), (12, False), (13, False), (14, True), (39, True)]
)
@pytest.mark.parametrize("n_context", [0, 1, 13, 39])
def test_truncated_only_when_the_sentence_alone_is_too_long(word_tokenizer, n_sentence, truncated, n_context):
    build = InputBuilder(word_tokenizer, max_length=16, context=True)
    context = words("c", n_context) or None
    (enc,) = build([words("s", n_sentence)], [context])
    assert enc.truncated is truncated
    assert len(enc.input_ids) <= 16
    got = tokens(word_tokenizer, enc.input_ids)
    kept = min(n_sentence, 13)
    assert got[1 : kept + 1] == words("s", kept).split()  # the sentence's beginning, never the context's
    n_context_kept = min(n_context, 13 - kept)
    assert got[kept + 2 : -1] == [f"c{i}" for i in range(n_context - n_context_kept, n_context)]


def test_the_first_sentence_of_a_document_reads_an_empty_pair(word_tokenizer):
    build = InputBuilder(word_tokenizer, max_length=16, context=True)
    none, empty = build(["s1 s2", "s1 s2"], [None, ""])
    assert tokens(word_tokenizer, none.input_ids) == ["[CLS]", "s1", "s2", "[SEP]", "[SEP]"]
    assert none == empty


def test_a_no_context_model_ignores_contexts(word_tokenizer, tiny_model_dir):
    build = InputBuilder(word_tokenizer, max_length=16, context=False)  # 14 tokens after 2 specials
    with_context = build([words("s", 3), words("s", 20)], [words("c", 5), words("c", 5)])
    assert with_context == build([words("s", 3), words("s", 20)])
    assert tokens(word_tokenizer, with_context[0].input_ids) == ["[CLS]", "s0", "s1", "s2", "[SEP]"]
    assert [e.truncated for e in with_context] == [False, True]
    assert 1 not in with_context[1].token_type_ids and len(with_context[1].input_ids) == 16
    clf = Classifier.load(tiny_model_dir)
    texts = [t for t, _ in SAMPLE]
    assert clf.predict(texts, list(reversed(texts))) == clf.predict(texts)


def test_bad_arguments_are_value_errors(word_tokenizer):
    with pytest.raises(ValueError, match="leaves no room"):
        InputBuilder(word_tokenizer, max_length=3, context=True)
    with pytest.raises(ValueError, match="got 1 contexts for 2 texts"):
        InputBuilder(word_tokenizer, max_length=16, context=True)(["s1", "s2"], ["c1"])


def _examples(texts: list[str], contexts: list[str | None]) -> list[Example]:
    return [Example("d", i, t, "claim", c) for i, (t, c) in enumerate(zip(texts, contexts, strict=True))]


def test_training_encode_and_the_classifier_build_the_same_ids(sharp_context_model_dir):
    # The context model's tokenizer, rebuilt as tests/conftest.py built it before saving it.
    tokenizer = tiny_tokenizer([t for t, _ in SAMPLE] * 3)
    texts = [t for t, _ in SAMPLE] + ["Police said the ministry denied the report. " * 5]
    contexts = [None, texts[0], texts[1] * 4, "", texts[2]]
    clf = Classifier.load(sharp_context_model_dir)  # its tokenizer comes back from the model folder
    served = clf.inputs(texts, contexts)
    trained = encode(_examples(texts, contexts), tokenizer, clf.info.max_length, clf.info.context)
    assert trained["input_ids"] == [e.input_ids for e in served]
    assert trained["token_type_ids"] == [e.token_type_ids for e in served]
    assert trained["attention_mask"] == [[1] * len(e.input_ids) for e in served]
    assert [e.truncated for e in served] == [False] * 4 + [True]
    assert any(1 in e.token_type_ids for e in served)  # pairs, not sentences alone


LONG_CONTEXT = (
    "Unbelievably, the spokeswoman's counter-allegations—circulated overnight by Reuters—"
    "were later retracted by the ministry's press office, which blamed a misunderstanding."
)


@pytest.mark.parametrize("max_length", [24, 40, 128])
def test_minilm_pairs_match_the_tokenizer_trimming_the_context_on_the_left(minilm_tokenizer, max_length):
    sentence = "The minister categorically denied the allegations."
    (enc,) = InputBuilder(minilm_tokenizer, max_length, context=True)([sentence], [LONG_CONTEXT])
    minilm_tokenizer.truncation_side = "left"
    try:
        expected = minilm_tokenizer(sentence, LONG_CONTEXT, truncation="only_second", max_length=max_length)
    finally:
        minilm_tokenizer.truncation_side = "right"
    assert enc.input_ids == expected["input_ids"]
    assert enc.token_type_ids == expected["token_type_ids"]
    assert enc.truncated is False


def test_minilm_sentences_match_the_tokenizer_and_a_long_one_is_cut_at_its_end(minilm_tokenizer):
    sentences = ["Police said three men were arrested.", LONG_CONTEXT * 3]
    single = InputBuilder(minilm_tokenizer, 32, context=False)(sentences)
    assert [e.input_ids for e in single] == minilm_tokenizer(sentences, truncation=True, max_length=32)[
        "input_ids"
    ]
    assert [e.truncated for e in single] == [False, True]
    (paired,) = InputBuilder(minilm_tokenizer, 32, context=True)([sentences[1]], [sentences[0]])
    # The sentence fills the budget on its own: its first 29 tokens, and no room for any context.
    head = minilm_tokenizer(sentences[1], add_special_tokens=False)["input_ids"][:29]
    cls, sep = minilm_tokenizer.cls_token_id, minilm_tokenizer.sep_token_id
    assert paired.input_ids == [cls, *head, sep, sep] and paired.truncated is True


# previous_sentences ---------------------------------------------------------------


def test_previous_sentence_follows_idx_not_input_order():
    texts = ["third", "first", "second", "other first"]
    got = previous_sentences(texts, docs=["a", "a", "a", "b"], idx=[2, 0, 1, 0])
    assert got == ["second", None, "first", None]


def test_without_idx_input_order_is_reading_order_and_no_docs_is_one_doc():
    assert previous_sentences(["x", "y", "z"], docs=["a", "b", "a"]) == [None, None, "x"]
    assert previous_sentences(["x", "y", "z"]) == [None, "x", "y"]
    assert previous_sentences([]) == []


def test_gaps_in_idx_take_the_previous_sentence_given():
    assert previous_sentences(["late", "early"], docs=["a", "a"], idx=[7, 2]) == ["early", None]


def test_an_integer_and_its_string_are_one_document():
    assert previous_sentences(["x", "y"], docs=[1, "1"]) == [None, "x"]
    assert previous_sentences(["y", "x"], docs=["1", 1], idx=["1", 0]) == ["x", None]
    assert doc_key(1) == doc_key("1") == "1"


def test_a_none_doc_is_a_document_of_its_own():
    assert previous_sentences(["x", "y", "z"], docs=[None, None, "a"]) == [None, None, None]
    assert previous_sentences(["x", "y"], docs=[None, None], idx=[0, 1]) == [None, None]


def test_a_doc_with_idx_on_some_rows_only_is_refused():
    with pytest.raises(ValueError, match="document 'a': give idx on every row or on none"):
        previous_sentences(["x", "y", "z"], docs=["a", "a", "b"], idx=[0, None, None])


@pytest.mark.parametrize("idx", [[1, 1], [1, "1"], [0, " 0 "]])
def test_a_duplicate_idx_is_refused(idx):
    with pytest.raises(ValueError, match="document 'a': the same idx appears twice"):
        previous_sentences(["x", "y"], docs=["a", "a"], idx=idx)


@pytest.mark.parametrize("doc", [["a"], {"a": 1}, {"a"}, 1.5, True, b"a", ("a",)])
def test_unhashable_or_odd_doc_types_are_refused(doc):
    with pytest.raises(ValueError, match="doc of row 1 must be a string or an integer"):
        previous_sentences(["x", "y"], docs=["a", doc])


@pytest.mark.parametrize("bad", [True, "two", 1.5, [1]])
def test_a_bad_idx_is_refused(bad):
    with pytest.raises(ValueError, match="idx of row 1 must be an integer"):
        previous_sentences(["x", "y"], docs=["a", "a"], idx=[0, bad])


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="same length"):
        previous_sentences(["x", "y"], docs=["a"])
    with pytest.raises(ValueError, match="same length"):
        previous_sentences(["x", "y"], idx=[0])

"""inference/inputs.py: how a sentence and its context become model input, and which sentences are its context."""

import hashlib
import json
import random
import shutil
from dataclasses import replace

import pytest
from transformers import AutoTokenizer

from inference.inputs import (
    PREVIOUS,
    WIDEST,
    Context,
    InputBuilder,
    Window,
    context_windows,
    doc_key,
    previous_sentences,
    share,
)
from inference.model import read_info
from inference.predict import Classifier
from inference.records import Example
from tests.conftest import SAMPLE, train_cli
from training.data import SoftExample, encode, load_split
from training.modeling import resolve_base, tiny_tokenizer

WORDS = [f"s{i}" for i in range(40)] + [f"c{i}" for i in range(40)] + [f"a{i}" for i in range(40)]


@pytest.fixture(scope="module")
def word_tokenizer():
    """One token per word ``s0``..``s39``, ``c0``..``c39``, ``a0``..``a39``: token counts are word counts."""
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


# context windows ------------------------------------------------------------------


def test_a_window_reaches_across_its_document_and_stops_at_the_edges():
    texts = [f"t{i}" for i in range(5)]
    got = context_windows(texts, window=Window(2, 1))
    assert got == [
        Context((), ("t1",)),
        Context(("t0",), ("t2",)),
        Context(("t0", "t1"), ("t3",)),
        Context(("t1", "t2"), ("t4",)),
        Context(("t2", "t3"), ()),
    ]
    # The default is the widest window: every model finds its own window inside it.
    assert context_windows(texts)[4] == Context(("t1", "t2", "t3"), ())
    assert context_windows(texts) == context_windows(texts, window=WIDEST)
    assert context_windows(["only"], window=Window(3, 1)) == [Context()]
    assert context_windows([]) == []


def test_windows_of_interleaved_shuffled_documents_follow_idx():
    rows = [("a", i, f"a{i}") for i in range(5)] + [("b", i, f"b{i}") for i in range(3)] + [(None, 0, "alone")]
    random.Random(3).shuffle(rows)
    texts, docs, idx = [t for *_, t in rows], [d for d, *_ in rows], [i for _, i, _ in rows]
    got = dict(zip(texts, context_windows(texts, docs, idx, Window(2, 1)), strict=True))
    assert got["a0"] == Context((), ("a1",))
    assert got["a3"] == Context(("a1", "a2"), ("a4",))
    assert got["a4"] == Context(("a2", "a3"), ())
    assert got["b1"] == Context(("b0",), ("b2",))
    assert got["alone"] == Context()  # a row without a doc is a document of its own
    # previous_sentences is the one-before, none-after window of the same function.
    assert previous_sentences(texts, docs, idx) == [got[t].previous for t in texts]
    # Positions with gaps, given as strings: still reading order by idx.
    assert context_windows(["z", "x", "y"], ["d"] * 3, ["9", "1", "4"], Window(2, 1)) == [
        Context(("x", "y"), ()),
        Context((), ("y",)),
        Context(("x",), ("z",)),
    ]


def test_a_window_joins_its_previous_sentences_in_reading_order_with_one_space():
    context = Context(("First one.", "Second one.", "Third one."), ("Next one.", "After that."))
    assert Window(1, 0).parts(context) == ("Third one.", "")
    assert Window(2, 0).parts(context) == ("Second one. Third one.", "")
    assert Window(3, 1).parts(context) == ("First one. Second one. Third one.", "Next one.")
    assert Window(2, 1).parts("Given as it is.") == ("Given as it is.", "")  # a string is read as given
    assert Window(2, 1).parts(None) == ("", "")
    assert Context.of("A. B.", "C.") == Context(("A. B.",), ("C.",))
    assert Context.of(None, "") == Context()


@pytest.mark.parametrize(
    ("before", "after"), [(0, 0), (4, 0), (1, 2), (1, -1), (True, 0), ("2", 0), (2.0, 0), (1, None)]
)
def test_a_bad_window_is_a_value_error(before, after):
    with pytest.raises(ValueError, match=r"context_(before|after) must be an integer from"):
        Window(before, after)


def test_a_bad_context_is_a_value_error(word_tokenizer, sharp_window_model_dir):
    with pytest.raises(ValueError, match="tuple of sentences"):
        Context(before="a single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only strings"):
        Context(after=(1,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a context model"):
        InputBuilder(word_tokenizer, 16, context=False, window=Window(2, 0))
    with pytest.raises(ValueError, match=r"contexts\[1\] must be a string, a Context or None"):
        Classifier.load(sharp_window_model_dir).predict(["x", "y"], [None, ("a",)])  # type: ignore[list-item]


def _split_context(n_before: int, n_after: int) -> Context:
    """``c0 .. c<n_before-1>`` as two previous sentences, ``a0 .. a<n_after-1>`` as the next one."""
    c = words("c", n_before).split()
    half = len(c) // 2
    before = tuple(x for x in (" ".join(c[:half]), " ".join(c[half:])) if x)
    return Context(before, (words("a", n_after),) if n_after else ())


@pytest.mark.parametrize("n_sentence", [3, 10, 16, 17, 30])
@pytest.mark.parametrize(("n_before", "n_after"), [(0, 0), (4, 3), (14, 2), (2, 14), (14, 14), (0, 14), (14, 0)])
def test_a_window_keeps_the_sentence_whole_and_trims_each_part_from_its_far_side(
    word_tokenizer, n_sentence, n_before, n_after
):
    build = InputBuilder(word_tokenizer, max_length=20, context=True, window=Window(2, 1))
    assert build.budget == 16  # [CLS], [SEP] after the sentence, after the before-part, after the next
    (aligned,) = build.aligned([words("s", n_sentence)], [_split_context(n_before, n_after)])
    enc = aligned.encoded
    kept = min(n_sentence, 16)
    keep_before, keep_after = share(16 - kept, n_before, n_after)
    assert tokens(word_tokenizer, enc.input_ids) == [
        "[CLS]",
        *words("s", kept).split(),  # the sentence's beginning: cut only when it alone is too long
        "[SEP]",
        *[f"c{i}" for i in range(n_before - keep_before, n_before)],  # the words nearest the sentence
        "[SEP]",
        *[f"a{i}" for i in range(keep_after)],  # the next sentence's beginning
        "[SEP]",
    ]
    assert enc.truncated is (n_sentence > 16)
    assert enc.token_type_ids == [0] * (kept + 2) + [1] * (keep_before + keep_after + 2)
    assert aligned.segments == [None, *[0] * kept, None, *[1] * keep_before, None, *[2] * keep_after, None]
    assert len(enc.input_ids) <= 20


def test_when_both_parts_must_shrink_they_share_the_room_before_first():
    assert share(13, 14, 14) == (7, 6)  # half each, the before-part the larger half
    assert share(13, 14, 2) == (11, 2)  # a short next sentence leaves its share to the one before
    assert share(13, 3, 14) == (3, 10)  # and the other way round
    assert share(13, 5, 8) == (5, 8)
    assert share(0, 5, 8) == (0, 0)


def test_offsets_of_each_part_index_its_own_text(word_tokenizer):
    build = InputBuilder(word_tokenizer, max_length=40, context=True, window=Window(2, 1))
    context = Context(("c0 c1", "c2"), ("a0 a1",))
    (aligned,) = build.aligned(["s0 s1"], [context])
    before, after = Window(2, 1).parts(context)
    texts = {0: "s0 s1", 1: before, 2: after}
    spans = [texts[g][a:b] for g, (a, b) in zip(aligned.segments, aligned.offsets, strict=True) if g is not None]
    assert spans == ["s0", "s1", "c0", "c1", "c2", "a0", "a1"]


# a model that reads as it always read ----------------------------------------------

NEWS = [
    "Rebels said on Tuesday they had captured the town of Al-Qusayr after three days of fighting.",
    'The ministry denied the report, calling it "propaganda spread by terrorists".',
    '"We are in full control of the area," a spokesman told Reuters.',
    "Police said three men were arrested near the border crossing late on Monday night, and that a fourth, "
    "believed to be the group's leader, had escaped towards the river.",
    "It was not possible to verify either account independently.",
    "The town, a historic market centre, lies 10 km from the frontier.",
    "Unbelievably, the spokeswoman's counter-allegations—circulated overnight—were later retracted.",
    "He declined to comment.",
]
# sha256 (first 16 hex digits) of the inputs the builder made of NEWS, then NEWS reversed as a second
# document, each with its previous sentence, before context windows existed (MiniLM's tokenizer).
BEFORE_WINDOWS = {16: "48029e0a7322c5df", 24: "37f25aed4449a6ed", 40: "9ef6a93a28659ecf", 128: "73ae9d8e51d63ae6"}


def _digest(encoded) -> str:
    blob = json.dumps([[e.input_ids, e.token_type_ids, e.truncated] for e in encoded]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@pytest.mark.parametrize("max_length", sorted(BEFORE_WINDOWS))
def test_a_model_without_a_window_reads_byte_for_byte_what_it_read_before(minilm_tokenizer, max_length):
    texts, docs = NEWS + NEWS[::-1], ["a"] * len(NEWS) + ["b"] * len(NEWS)
    old_way = InputBuilder(minilm_tokenizer, max_length, context=True)(texts, previous_sentences(texts, docs))
    assert _digest(old_way) == BEFORE_WINDOWS[max_length]
    # The readers' widest neighbours, read through the default window: the very same ids.
    new_way = InputBuilder(minilm_tokenizer, max_length, True, PREVIOUS)(texts, context_windows(texts, docs))
    assert new_way == old_way
    assert any(e.truncated for e in old_way) is (max_length <= 24)


def test_a_folder_written_before_windows_reads_the_previous_sentence(sharp_context_model_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(sharp_context_model_dir, old)
    config = json.loads((old / "config.json").read_text())
    assert (config["claimlens"]["context_before"], config["claimlens"]["context_after"]) == (1, 0)
    for key in ("context_before", "context_after"):
        del config["claimlens"][key]
    (old / "config.json").write_text(json.dumps(config))
    assert read_info(old).window == PREVIOUS
    texts = [t for t, _ in SAMPLE]
    widest = context_windows(texts)
    assert Classifier.load(old).predict(texts, widest) == Classifier.load(old).predict(
        texts, previous_sentences(texts)
    )
    assert Classifier.load(old).predict(texts, widest) == Classifier.load(sharp_context_model_dir).predict(
        texts, widest
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"context_before": 0}, "claimlens.context_before must be an integer from 1 to 3, got 0"),
        ({"context_after": 2}, "claimlens.context_after must be an integer from 0 to 1, got 2"),
        ({"context": False, "context_before": 2}, "sets a context window but context is false"),
    ],
)
def test_a_folder_with_a_bad_window_is_refused(sharp_window_model_dir, tmp_path, section, message):
    bad = tmp_path / "bad"
    shutil.copytree(sharp_window_model_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["claimlens"] = {**config["claimlens"], "context_before": 1, "context_after": 0, **section}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        Classifier.load(bad)


# a model with a window ---------------------------------------------------------------


def _window_texts() -> list[str]:
    return [t for t, _ in SAMPLE] * 2 + ["Police said the ministry denied the report. " * 4]


def test_the_window_model_folder_says_what_it_reads(sharp_window_model_dir):
    section = json.loads((sharp_window_model_dir / "config.json").read_text())["claimlens"]
    assert (section["context"], section["context_before"], section["context_after"]) == (True, 2, 1)
    clf = Classifier.load(sharp_window_model_dir)
    assert clf.info.window == Window(2, 1) and clf.inputs.window == Window(2, 1)
    texts = _window_texts()
    assert clf.contexts(texts) == context_windows(texts, window=Window(2, 1))


def test_training_encode_and_the_classifier_build_the_same_window(sharp_window_model_dir):
    tokenizer = tiny_tokenizer([t for t, _ in SAMPLE] * 3)
    texts = _window_texts()
    widest = context_windows(texts)
    examples = [Example("d", i, t, "claim", c) for i, (t, c) in enumerate(zip(texts, widest, strict=True))]
    clf = Classifier.load(sharp_window_model_dir)
    served = clf.inputs(texts, clf.contexts(texts))
    trained = encode(examples, tokenizer, clf.info.max_length, clf.info.context, window=clf.info.window)
    assert trained["input_ids"] == [e.input_ids for e in served]
    assert trained["token_type_ids"] == [e.token_type_ids for e in served]
    # Two [SEP]s after the sentence's: the next sentence is read, in its own part.
    assert all(e.input_ids.count(tokenizer.sep_token_id) == 3 for e in served)
    assert served != clf.inputs(texts, previous_sentences(texts))


def test_the_window_changes_what_the_model_says(sharp_window_model_dir):
    clf = Classifier.load(sharp_window_model_dir)
    texts = _window_texts()
    windows = clf.predict(texts, clf.contexts(texts))
    assert windows != clf.predict(texts, previous_sentences(texts))
    # Context objects, and the same context already cut to the window as text, read alike.
    cut = [Context.of(*clf.info.window.parts(c)) for c in clf.contexts(texts)]
    assert clf.predict(texts, cut) == windows
    assert clf.predict(texts, context_windows(texts)) == windows


def test_explanations_read_the_window_before_and_refuse_the_next_sentence(sharp_window_model_dir):
    clf = Classifier.load(sharp_window_model_dir)
    texts = _window_texts()[:5]
    with pytest.raises(ValueError, match="also reads the next sentence"):
        clf.explain(texts, clf.contexts(texts))
    before_only = Classifier(clf.backend, clf.tokenizer, replace(clf.info, context_after=0))
    contexts = before_only.contexts(texts)
    (explained,) = before_only.explain(texts[2:3], contexts[2:3])
    joined = " ".join(texts[:2])
    context_words = [s for s in explained.spans if s.segment == "context"]
    assert context_words and all(joined[s.start : s.end] == s.text for s in context_words)
    assert {s.text for s in context_words} & set(texts[0].lower().split())  # two sentences back


def test_distillation_with_a_wider_window_is_refused():
    tokenizer = tiny_tokenizer([t for t, _ in SAMPLE] * 3)
    examples = [Example("d", 0, SAMPLE[0][0], "claim")]
    soft = [SoftExample("d", 1, SAMPLE[1][0], SAMPLE[0][0], (0.25,) * 4)]
    with pytest.raises(ValueError, match="distillation reads each pool sentence with its previous sentence"):
        encode(examples, tokenizer, 64, True, soft, window=Window(2, 0))


def test_a_tiny_training_with_a_window_saves_a_folder_that_reads_it(tmp_path):
    window = ["model.context=true", "model.context_before=2", "model.context_after=1", "model.max_length=64"]
    proc = train_cli(tmp_path, "tiny", "tracking.enabled=false", "train.epochs=1", *window)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_dir = tmp_path / "models" / "tiny"
    section = json.loads((model_dir / "config.json").read_text())["claimlens"]
    assert (section["context_before"], section["context_after"], section["max_length"]) == (2, 1, 64)
    clf = Classifier.load(model_dir)
    assert clf.info.window == Window(2, 1)
    # Dev was read during training as the saved folder reads it, with its window: the temperature
    # fitted on dev's logits then is the one the folder's own dev logits give, and not the one
    # they give with the previous sentence alone.
    from training.calibration import fit_temperature, held_out_logits
    from training.config import load_config

    dev = load_split(load_config(model_dir / "train_config.yaml").data.dev, tmp_path)
    assert fit_temperature(*held_out_logits(clf, dev)) == section["temperature"]
    one = Classifier(clf.backend, clf.tokenizer, replace(clf.info, context_before=1, context_after=0))
    assert fit_temperature(*held_out_logits(one, dev)) != section["temperature"]

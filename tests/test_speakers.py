"""The speaker/cue tagger: PolNeAR reading, BIO tags and offsets, a tiny training, the extractor's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, SHARED, SPEAKER_ARTICLE, lookup_tagger, polnear_root

from inference.inputs import InputBuilder
from inference.predict import Classifier, analyze, speaker_extractor
from inference.sentences import Sentence, split_sentences
from inference.speaker_type import SpeakerType, official_by_words, remember, speaker_type
from inference.speakers import TAGS, Attribution, Span, SpeakerExtractor, TaggedSpan, attribution, decode
from training.modeling import tiny_tokenizer
from training.speakers_data import keep_negatives, read_split, span_counts, span_scores, tag_ids
from training.speakers_train import load_speakers_config, main, train
from training.tracking import NullTracker
from training.weak import read_brat

ARTICLE = (
    "Police in Balkh said the town was calm.\n"
    'The official added: "It is quiet.'
    ' We are safe."\n'
    "Rebels claimed they took the bridge, accusing the army of lying.\n"
    "The town is old."
)


def _ann(text: str, relations: list[dict[str, str | list[str]]]) -> str:
    """BRAT lines for ``relations``: role -> a phrase, or the fragments of a discontinuous span.

    A phrase is found at its first occurrence, each further fragment after the one before.
    """
    lines, n = [], 0
    for e, rel in enumerate(relations, start=1):
        parts = []
        for role, phrase in rel.items():
            phrases = phrase if isinstance(phrase, list) else [phrase]
            fragments, after = [], 0
            for p in phrases:
                start = text.index(p, after)
                fragments.append(f"{start} {start + len(p)}")
                after = start + len(p)
            offsets = ";".join(fragments)
            n += 1
            lines.append(f"T{n}\t{role} {offsets}\t{' '.join(phrases)}")
            parts.append(f"{role}:T{n}")
        lines.append(f"E{e}\tAttribution:T{n} " + " ".join(parts))
    return "\n".join(lines) + "\n"


RELATIONS: list[dict[str, str | list[str]]] = [
    {"Source": "Police in Balkh", "Cue": "said", "Content": "the town was calm"},
    {"Source": "The official", "Cue": "added", "Content": 'It is quiet. We are safe."'},
    {"Source": "Rebels", "Cue": "claimed", "Content": "they took the bridge"},
    {"Cue": ["accusing", "of"], "Content": "lying"},
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return polnear_root(tmp_path, {"art": ARTICLE}, {"art": _ann(ARTICLE, RELATIONS)})


@pytest.fixture(scope="module")
def dev_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic root with the same article as dev too: a smoke training needs dev pairs."""
    root = polnear_root(tmp_path_factory.mktemp("spk"), {"art": ARTICLE}, {"art": _ann(ARTICLE, RELATIONS)})
    dev = root / "polnear" / "data" / "dev"
    (dev / "text").mkdir(parents=True)
    (dev / "attributions").mkdir()
    (dev / "text" / "art.txt").write_text(ARTICLE)
    (dev / "attributions" / "art_x1.ann").write_text(_ann(ARTICLE, RELATIONS))
    return root


def _texts(example, segment: int) -> list[tuple[str, str]]:
    text = example.text if segment == 0 else example.context
    return [(s.role, text[s.start : s.end]) for s in example.segment(segment)]


def test_reader_tags_own_spans_and_continuations_in_the_previous_sentence(root: Path) -> None:
    examples = read_split(root, "train")
    assert [e.text for e in examples] == [s.text for s in split_sentences(ARTICLE)]
    police, official, quote, rebels, other = examples
    assert _texts(police, 0) == [("SOURCE", "Police in Balkh"), ("CUE", "said")]
    assert _texts(official, 0) == [("SOURCE", "The official"), ("CUE", "added")]
    assert _texts(official, 1) == []  # the police attribution does not continue into it
    # The quotation continues: its speaker and cue are tagged in the previous sentence.
    assert quote.context == official.text
    assert _texts(quote, 0) == [] and _texts(quote, 1) == [("SOURCE", "The official"), ("CUE", "added")]
    # A discontinuous cue ("accusing … of") is one span per fragment.
    assert _texts(rebels, 0) == [("SOURCE", "Rebels"), ("CUE", "claimed"), ("CUE", "accusing"), ("CUE", "of")]
    assert other.spans == ()


def test_reader_takes_one_annotator_and_reads_fragments(root: Path) -> None:
    ann_dir = root / "polnear" / "data" / "train" / "attributions"
    (ann_dir / "art_x2.ann").write_text(_ann(ARTICLE, [{"Source": "Rebels", "Cue": "claimed"}]))
    assert len([s for e in read_split(root, "train") for s in e.spans]) == 10  # x1's, not x2's
    cue = read_brat(ann_dir / "art_x1.ann")[3].cue
    assert cue is not None and len(cue.fragments) == 2
    assert ARTICLE[cue.start : cue.end] == "accusing the army of"


def test_reader_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown PolNeAR split"):
        read_split(root, "validation")
    with pytest.raises(ValueError, match="no PolNeAR dev articles"):
        read_split(root, "dev")
    with pytest.raises(ValueError, match="fraction"):
        keep_negatives([], 1.5, seed=0)


def _builder(max_length: int = 64) -> InputBuilder:
    return InputBuilder(tiny_tokenizer([ARTICLE]), max_length=max_length, context=True)


def test_aligned_is_the_builder_input_with_offsets() -> None:
    build = _builder()
    texts, contexts = ["They added, it is quiet."], ["The official said."]
    (aligned,) = build.aligned(texts, contexts)
    assert aligned.encoded == build(texts, contexts)[0]
    assert aligned.segments[0] is None and aligned.segments[1] == 0 and 1 in aligned.segments
    for segment, (a, b) in zip(aligned.segments, aligned.offsets, strict=True):
        if segment is not None:
            assert (texts[0] if segment == 0 else contexts[0])[a:b].strip()


def test_tags_round_trip_to_the_same_spans_in_both_segments(root: Path) -> None:
    build = _builder()
    for example in read_split(root, "train"):
        (aligned,) = build.aligned([example.text], [example.context])
        tags = tag_ids(aligned, example.spans)
        decoded = decode([max(t, 0) for t in tags], aligned, (example.text, example.context or ""))
        assert sorted(decoded, key=lambda s: (s.segment, s.start)) == list(example.spans)


def test_truncated_context_keeps_the_spans_nearest_the_sentence() -> None:
    context = "Far words come first here. " * 8 + "The official added:"
    spans = [
        TaggedSpan("SOURCE", 1, context.index("Far"), 3),
        TaggedSpan("SOURCE", 1, len(context) - 19, len(context) - 7),
    ]
    build = _builder(max_length=24)
    (aligned,) = build.aligned(["It is quiet."], [context])
    decoded = decode([max(t, 0) for t in tag_ids(aligned, spans)], aligned, ("It is quiet.", context))
    assert [context[s.start : s.end] for s in decoded] == ["The official"]  # "Far" was trimmed away


def test_decode_widens_to_whole_words_and_joins_i_tags() -> None:
    build = _builder()
    (aligned,) = build.aligned(["Spokeswomen said so."], [None])
    tags = [0] * len(aligned.segments)
    inside = [i for i, s in enumerate(aligned.segments) if s == 0]
    tags[inside[1]] = TAGS.index("I-SOURCE")  # only a later piece of "Spokeswomen", and an I
    decoded = decode(tags, aligned, ("Spokeswomen said so.", ""))
    assert decoded == [TaggedSpan("SOURCE", 0, 0, len("Spokeswomen"))]
    with pytest.raises(ValueError, match="tags for"):
        decode([0], aligned, ("Spokeswomen said so.", ""))


def test_decode_takes_a_run_of_one_role_as_one_span_and_splits_at_o() -> None:
    text, context = "The official said so, the police added.", "Police in Balkh said."
    (aligned,) = _builder().aligned([text], [context])
    words = {
        "the": "B-SOURCE",
        "official": "B-SOURCE",
        "said": "B-CUE",
        "police": "B-SOURCE",
        "balkh": "I-SOURCE",
    }
    tags = []
    for segment, (a, b) in zip(aligned.segments, aligned.offsets, strict=True):
        piece = (text if segment == 0 else context)[a:b].lower() if segment is not None else ""
        tags.append(TAGS.index(words.get(piece, "O")))
    found = [
        (s.segment, (text if s.segment == 0 else context)[s.start : s.end])
        for s in decode(tags, aligned, (text, context))
    ]
    # "The official" despite its second B-; "the police" (B B) and "Police" + "Balkh" around an O.
    assert found == [
        (0, "The official"),
        (0, "said"),
        (0, "the police"),
        (1, "Police"),
        (1, "Balkh"),
        (1, "said"),
    ]


def test_span_scores_count_exact_and_overlap() -> None:
    text = "Police in Balkh said, and the mayor agreed."
    gold = [TaggedSpan("SOURCE", 0, 0, 15), TaggedSpan("SOURCE", 0, 26, 35)]
    found = [TaggedSpan("SOURCE", 0, 0, 15), TaggedSpan("SOURCE", 0, 30, 35), TaggedSpan("SOURCE", 0, 36, 42)]
    counts = span_counts(text, gold, found)
    assert counts == {"gold": 2, "predicted": 3, "exact": 1, "overlap_predicted": 2, "overlap_gold": 2}
    scores = span_scores(counts)
    assert scores["exact_p"] == round(1 / 3, 4) and scores["exact_r"] == 0.5 and scores["overlap_r"] == 1.0


SENTENCES = split_sentences(
    'In another context, a NATO official stated today that it goes on. The official told Reuters: "Yes." '
    'They added, "Not yet. They must stop."'
)


def _at(sentence: Sentence, phrase: str, segment: int, role: str = "SOURCE") -> TaggedSpan:
    start = sentence.text.index(phrase)
    return TaggedSpan(role, segment, start, start + len(phrase))


def test_attribution_follows_speakers_back_through_previous_sentences() -> None:
    s = SENTENCES
    first = attribution(
        [_at(s[0], "a NATO official", 0), _at(s[0], "stated", 0, "CUE")],
        (s[0], None),
        "official_statement",
        None,
    )
    assert first is not None and first.speaker == Span("a NATO official", 20, 35) and first.antecedent is None
    told = attribution([_at(s[1], "The official", 0)], (s[1], s[0]), "denial", first)
    assert told is not None and told.antecedent == first.speaker and told.speaker_type == "official"
    assert told.cue is None and not told.speaker_in_previous
    added = attribution(
        [_at(s[2], "They", 0), _at(s[2], "added", 0, "CUE")], (s[2], s[1]), "official_statement", told
    )
    assert added is not None and added.antecedent == first.speaker
    stop = attribution([_at(s[2], "They", 1), _at(s[2], "added", 1, "CUE")], (s[3], s[2]), "denial", added)
    assert stop == Attribution(added.speaker, added.cue, "official", True, first.speaker)
    # "The group" stands only for a speaker named a group; a named speaker stands for itself.
    nato = attribution([_at(s[0], "a NATO official", 0)], (s[0], None), "claim", None)
    group = split_sentences("The group said so.")[0]
    found = attribution([_at(group, "The group", 0)], (group, s[0]), "claim", nato)
    assert found is not None and found.antecedent is None
    # Nothing found is no attribution.
    named = attribution([_at(s[1], "The official", 0)], (s[1], s[0]), "claim", None)
    assert named is not None and named.antecedent is None and named.speaker_type == "non_official"
    assert attribution([], (s[1], s[0]), "claim", first) is None
    # Nothing tagged inside a quotation the previous sentence opened: its speaker goes on.
    assert attribution([], (s[3], s[2]), "official_statement", added) == stop


def test_quote_continuation_needs_an_open_quote_and_a_speaker() -> None:
    s = split_sentences('Rebels said "we won." The town is calm.')
    before = attribution([_at(s[0], "Rebels", 0)], (s[0], None), "claim", None)
    assert attribution([], (s[1], s[0]), "claim", before) is None  # the quotation was closed
    opened = split_sentences('Rebels said: "We won. The town is ours."')
    assert attribution([], (opened[1], opened[0]), "claim", None) is None  # no speaker to go on with


@pytest.mark.parametrize(
    ("speaker", "expected"),
    [
        ("Police in Balkh Province", "official"),
        ("The Deputy Governor of Samangan", "official"),
        ("a NATO official", "official"),
        ("the ministry", "official"),
        ("the company", "official"),
        ("a Taliban spokesman", "non_official"),
        ("The Taliban", "non_official"),
        ("former officials", "non_official"),
        ("residents", "non_official"),
        ("an analyst at the institute", "non_official"),
        ("Donald Trump", "non_official"),
        ("the WHO", "official"),
        ("a man who saw it", "non_official"),
        ("they", None),
        ("Sen. Ben Sasse (R-Neb.)", "official"),
        ("the U.N.", "official"),
        ("the Secret Service", "official"),
    ],
)
def test_denial_speaker_type_follows_labels_md(speaker: str, expected: str | None) -> None:
    assert official_by_words(speaker) == expected
    assert speaker_type("denial", speaker) == expected


def test_a_denial_by_a_bare_name_takes_its_type_from_earlier_in_the_article() -> None:
    known: dict[str, SpeakerType] = {}
    remember(known, "official_statement", "Rep. James E. Clyburn (D-S.C.)")
    remember(known, "claim", "Donald Trump")
    remember(known, "denial", "Mr. Obama")  # a denial's label says nothing about its speaker
    assert known == {"clyburn": "official", "trump": "non_official"}
    assert speaker_type("denial", "Mr. Clyburn", known) == "official"
    assert speaker_type("denial", "Trump", known) == "non_official"
    assert speaker_type("denial", "Mr. Obama", known) == "non_official"  # unknown: not official
    assert speaker_type("denial", "a Clyburn campaign aide", known) == "non_official"  # words decide first


def test_speaker_type_from_the_label_where_it_decides() -> None:
    assert speaker_type("official_statement", "Rebels") == "official"
    assert speaker_type("claim", "Police") == "non_official"
    assert speaker_type("denial", None) is None
    with pytest.raises(ValueError, match="not 'other'"):
        speaker_type("other", "Police")


def _tiny_overrides(root: Path, out: Path, *more: str) -> list[str]:
    return [
        f"data.root={root}",
        f"output_dir={out}",
        "data.dev_articles=1",
        "data.test_articles=0",
        "model.base=tiny-random",
        "model.max_length=48",
        "optim.lr=3e-3",
        "optim.warmup_ratio=0.0",
        "train.batch_size=2",
        "tracking.enabled=false",
        *more,
    ]


@pytest.fixture(scope="module")
def tiny_speakers(dev_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("speakers")
    config = load_speakers_config(
        ROOT / "configs" / "speakers.yaml", _tiny_overrides(dev_root, out, "train.epochs=40")
    )
    return train(config, NullTracker())


def test_tiny_model_trains_and_extracts_spans_at_article_offsets(tiny_speakers: tuple[Path, dict]) -> None:
    model_dir, metrics = tiny_speakers
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert json.loads((model_dir / "config.json").read_text())["claimlens"]["task"] == "speakers"
    extractor = SpeakerExtractor.load(model_dir)
    sentences = split_sentences(ARTICLE)
    labels = ["official_statement", "official_statement", "official_statement", "claim", "other"]
    found = extractor.extract(sentences, labels)
    assert found[-1] is None  # `other` is never attributed
    for a in found:
        for span in (a.speaker, a.cue, a.antecedent) if a else ():
            assert span is None or ARTICLE[span.start : span.end] == span.text
    # Forty epochs over one article: the tiny model has learnt it.
    police, official, quote, rebels, _ = found
    assert (
        police is not None
        and police.speaker == Span("Police in Balkh", 0, 15)
        and police.cue == Span("said", 16, 20)
    )
    assert quote is not None and quote.speaker_in_previous and quote.speaker == official.speaker  # type: ignore[union-attr]
    assert rebels is not None and rebels.speaker_type == "non_official" and rebels.speaker.text == "Rebels"  # type: ignore[union-attr]


def test_extract_rejects_bad_input(tiny_speakers: tuple[Path, dict]) -> None:
    extractor = SpeakerExtractor.load(tiny_speakers[0])
    sentences = split_sentences(ARTICLE)
    with pytest.raises(ValueError, match="labels for"):
        extractor.extract(sentences, ["claim"])
    with pytest.raises(ValueError, match="must be a Sentence"):
        extractor.extract(["Police said so."], ["claim"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unknown label"):
        extractor.extract(sentences[:1], ["quote"])
    with pytest.raises(ValueError, match="reading order"):
        extractor.extract([sentences[1], sentences[0]], ["claim", "claim"])
    with pytest.raises(ValueError, match="reading order"):
        extractor.extract([Sentence("Police said so.", 0, 3)], ["claim"])
    assert extractor.extract([], []) == []


def test_load_refuses_a_label_model(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="not a speaker model"):
        SpeakerExtractor.load(tiny_model_dir)
    with pytest.raises(ValueError, match="does not exist"):
        SpeakerExtractor.load(tiny_model_dir.parent / "missing")


def test_cli_reports_config_errors(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "configs" / "speakers.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", config, "train.epoch=2"])
    assert exit_info.value.code == 2
    assert "train.epoch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--config", config, "data.negatives=2"])


def test_cli_trains_and_tracks(dev_root: Path, tmp_path: Path) -> None:
    """The entry point end to end, with MLflow in a temporary store."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "cli"
    overrides = _tiny_overrides(dev_root, out, "train.epochs=1", "train.max_steps=2")
    overrides = [o for o in overrides if o != "tracking.enabled=false"] + [f"tracking.uri={uri}"]
    assert main(["--config", str(ROOT / "configs" / "speakers.yaml"), *overrides]) == 0
    assert (out / "speakers" / "model.safetensors").is_file()
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=["claimlens-speakers"], output_format="list")
    assert run.info.status == "FINISHED" and "dev_score" in run.data.metrics


SPEAKERS_MODEL = ROOT / "models" / "speakers"


@pytest.mark.slow
@pytest.mark.real_weights
@pytest.mark.skipif(
    not (SPEAKERS_MODEL / "model.safetensors").is_file(), reason="train models/speakers first"
)
def test_seed_article_speakers() -> None:
    """The trained model names the seed article's three official speakers on their sentences."""
    from benchmarks.speakers import SEED_SPEAKERS, seed_speakers

    rows = seed_speakers(
        SpeakerExtractor.load(SPEAKERS_MODEL), SHARED / "LABELS.md", SHARED / "seed_article.txt"
    )
    assert len(rows) == len(SEED_SPEAKERS)
    for row in rows:
        assert row["ok"], row


COMMANDER = Span("Commander Zorblatov", 0, 19)
SAID = Span("said", 20, 24)


def test_analyze_gives_attributed_sentences_their_speaker_and_cue(
    official_model_dir: Path, tiny_speaker_model_dir: Path
) -> None:
    clf = Classifier.load(official_model_dir)  # labels every sentence official_statement
    plain = clf.analyze(SPEAKER_ARTICLE)
    assert [s.attribution for s in plain] == [None, None, None]
    first, second, third = clf.analyze(SPEAKER_ARTICLE, speakers=tiny_speaker_model_dir)
    assert first.attribution == Attribution(COMMANDER, SAID, "official", False, None)
    assert SPEAKER_ARTICLE[SAID.start : SAID.end] == "said"
    # Named one sentence earlier: the speaker and cue stand in the previous sentence, in article offsets.
    assert second.attribution == Attribution(COMMANDER, SAID, "official", True, None)
    assert third.attribution is None  # nothing tagged, and no open quotation to go on with
    assert [(s.sentence, s.label, s.scores) for s in plain] == [
        (s.sentence, s.label, s.scores) for s in (first, second, third)
    ]


def test_analyze_takes_an_extractor_or_a_cached_directory(
    official_model_dir: Path, tiny_speaker_model_dir: Path
) -> None:
    model, tokenizer = lookup_tagger([SPEAKER_ARTICLE])
    in_memory = SpeakerExtractor(model, tokenizer, max_length=64)
    by_object = analyze(SPEAKER_ARTICLE, official_model_dir, speakers=in_memory)
    by_folder = analyze(SPEAKER_ARTICLE, official_model_dir, speakers=str(tiny_speaker_model_dir))
    assert [s.attribution for s in by_object] == [s.attribution for s in by_folder]
    assert by_folder[0].attribution is not None and by_folder[0].attribution.speaker == COMMANDER
    assert speaker_extractor(tiny_speaker_model_dir) is speaker_extractor(str(tiny_speaker_model_dir))
    assert speaker_extractor(in_memory) is in_memory and speaker_extractor(None) is None


def test_analyze_refuses_what_is_not_a_speaker_model(official_model_dir: Path, tiny_model_dir: Path) -> None:
    clf = Classifier.load(official_model_dir)
    with pytest.raises(ValueError, match="is not a speaker model"):
        clf.analyze(SPEAKER_ARTICLE, speakers=tiny_model_dir)  # a label model
    with pytest.raises(ValueError, match="does not exist"):
        analyze(SPEAKER_ARTICLE, official_model_dir, speakers=tiny_model_dir / "missing")
    with pytest.raises(ValueError, match="speakers must be a SpeakerExtractor or a speaker model directory"):
        clf.analyze(SPEAKER_ARTICLE, speakers=5)  # type: ignore[arg-type]

"""Who said it: the speaker (source) and cue of claim, denial and official_statement sentences.

A token-classification model (BIO tags for SOURCE and CUE, trained on PolNeAR's attribution
annotations by ``python -m training.speakers_train``) reads each sentence paired with its
previous sentence, built by ``InputBuilder`` like the label model's input, so that a
speaker named one sentence earlier ("a NATO official stated …" before "They must stop …")
is tagged where it stands. Token tags are mapped back to character spans of the article.

A speaker that only points back ("they", "the official", "the group") gets an
``antecedent``: the speaker of the previous sentence's attribution, followed back through
earlier sentences. The speaker type comes from ``inference.speaker_type``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from inference.backends import TorchBackend
from inference.inputs import Aligned, InputBuilder
from inference.labels import check_label
from inference.model import CONFIG_KEY, check_model_dir
from inference.sentences import Sentence
from inference.speaker_type import SpeakerType, remember, speaker_type

TASK = "speakers"
TAGS = ("O", "B-SOURCE", "I-SOURCE", "B-CUE", "I-CUE")
ATTRIBUTED = frozenset({"claim", "denial", "official_statement"})
# A speaker that refers back instead of naming: a pronoun or "the <role noun>".
_ANAPHOR = re.compile(
    r"he|she|they|we|it|(the|this|that|these|those)( \w+)? (?P<head>official|spokes(man|woman|person)|"
    r"representative|source|group|organi[sz]ation|alliance|agency|ministry|company|department)s?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TaggedSpan:
    """A SOURCE or CUE span of one segment (0: the sentence, 1: its previous sentence), in its offsets."""

    role: str
    segment: int
    start: int
    end: int


@dataclass(frozen=True)
class Span:
    """A piece of the article: ``article[start:end] == text``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Attribution:
    """Who made a sentence's assertion, and the words that report it, in article offsets.

    ``speaker_in_previous``: the speaker stands in the previous sentence, or was carried over
    from it into a sentence that goes on with its quotation. ``antecedent``: for
    a speaker that only points back ("they", "the official"), the earlier speaker it stands
    for; ``speaker_type`` is decided on the antecedent when there is one.
    """

    speaker: Span | None
    cue: Span | None
    speaker_type: SpeakerType | None
    speaker_in_previous: bool = False
    antecedent: Span | None = None


def _widen(span: TaggedSpan, text: str) -> TaggedSpan:
    """Grow a span to whole words: a tag on part of a word names the whole word."""
    start, end = span.start, span.end
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return TaggedSpan(span.role, span.segment, start, end)


def decode(tags: Sequence[int], aligned: Aligned, texts: tuple[str, str]) -> list[TaggedSpan]:
    """Token tags (indices into ``TAGS``) back to character spans of the sentence and its context.

    A run of tokens tagged with one role is one span, whether its tags after the first say
    ``I-`` or ``B-``: a ``B-`` in mid-name ("The | New York Post") is a common slip of the
    model, and two sources or cues with nothing between them are rare in PolNeAR.

    >>> decode([0, 1, 2, 3, 0], aligned, ("Police in Balkh said.", ""))  # doctest: +SKIP
    [TaggedSpan('SOURCE', 0, 0, 15), TaggedSpan('CUE', 0, 16, 20)]
    """
    if len(tags) != len(aligned.segments):
        raise ValueError(f"got {len(tags)} tags for {len(aligned.segments)} tokens")
    spans: list[TaggedSpan] = []
    current: TaggedSpan | None = None
    for tag, segment, (a, b) in zip(tags, aligned.segments, aligned.offsets, strict=True):
        name = TAGS[tag]
        if segment is None or name == "O":
            current = None
            continue
        role = name.split("-")[1]
        if current and current.role == role and current.segment == segment:
            current = spans[-1] = TaggedSpan(role, segment, current.start, b)
        else:
            current = TaggedSpan(role, segment, a, b)
            spans.append(current)
    return [_widen(s, texts[s.segment]) for s in spans]


def _article(span: TaggedSpan | None, where: tuple[Sentence, Sentence | None]) -> Span | None:
    if span is None:
        return None
    sentence = where[span.segment]
    assert sentence is not None  # a context span needs a previous sentence
    return Span(sentence.text[span.start : span.end], sentence.start + span.start, sentence.start + span.end)


def _pick(
    spans: list[TaggedSpan], role: str, near: Span | None, where: tuple[Sentence, Sentence | None]
) -> TaggedSpan | None:
    """The sentence's own span of ``role`` before its context's; the first, or the nearest to ``near``."""
    for segment in (0, 1):
        found = [s for s in spans if s.role == role and s.segment == segment]
        if found and near is None:
            return found[0] if segment == 0 else found[-1]  # the context's last is nearest the sentence
        if found and near is not None:
            return min(found, key=lambda s: abs(_start(s, where) - near.start))
    return None


def _start(span: TaggedSpan, where: tuple[Sentence, Sentence | None]) -> int:
    sentence = where[span.segment]
    return (sentence.start if sentence else 0) + span.start


def _antecedent(speaker: Span | None, in_previous: bool, before: Attribution | None) -> Span | None:
    """The earlier speaker a pointing-back ``speaker`` stands for, through the previous sentence.

    A pronoun stands for the previous speaker; "the <noun>" only for one that has the noun
    ("the official" for "a NATO official", not "the group" for "the Deputy Governor").
    """
    if speaker is None or before is None or before.speaker is None:
        return None
    if before.speaker == speaker:  # the same words, found again from the next sentence
        return before.antecedent
    match = _ANAPHOR.fullmatch(" ".join(speaker.text.split()))
    if in_previous or not match:
        return None
    target = before.antecedent or before.speaker
    head = match.group("head")
    return target if head is None or head.lower() in target.text.lower() else None


def _opens_quote(text: str) -> bool:
    return text.count('"') % 2 == 1 or text.count("“") > text.count("”")


def _continued(
    where: tuple[Sentence, Sentence | None],
    label: str,
    before: Attribution | None,
    known: dict[str, SpeakerType],
) -> Attribution | None:
    """A sentence that goes on with a quotation the previous sentence opened has its speaker."""
    if before is None or before.speaker is None or where[1] is None or not _opens_quote(where[1].text):
        return None
    who = before.antecedent or before.speaker
    return Attribution(
        before.speaker, before.cue, speaker_type(label, who.text, known), True, before.antecedent
    )


def attribution(
    spans: list[TaggedSpan],
    where: tuple[Sentence, Sentence | None],
    label: str,
    before: Attribution | None,
    known: dict[str, SpeakerType] | None = None,
) -> Attribution | None:
    """One sentence's attribution from its tagged spans; None when neither speaker nor cue was found.

    ``where`` is the sentence and its previous sentence; ``before`` the previous sentence's
    attribution, through which a pointing-back speaker finds its antecedent. The speaker is
    the sentence's first SOURCE span (else its context's last), the cue the CUE span nearest it.
    With neither, a sentence inside a quotation that the previous sentence opened ("They added,
    "There is … | They must stop …"") takes the previous sentence's speaker (``speaker_in_previous``).
    ``known``: speaker types by surname from the article's earlier sentences (for denials).

    >>> s = split_sentences("Police said it was calm.")[0]  # doctest: +SKIP
    >>> attribution([TaggedSpan("SOURCE", 0, 0, 6)], (s, None), "denial", None).speaker_type  # doctest: +SKIP
    'official'
    """
    source = _pick(spans, "SOURCE", None, where)
    speaker = _article(source, where)
    cue = _article(_pick(spans, "CUE", speaker, where), where)
    if speaker is None and cue is None:
        return _continued(where, label, before, known or {})
    in_previous = source is not None and source.segment == 1
    antecedent = _antecedent(speaker, in_previous, before)
    who = antecedent or speaker
    kind = speaker_type(label, who.text if who else None, known)
    return Attribution(speaker, cue, kind, in_previous, antecedent)


def describe_speaker_model(name: str, base_model: str, max_length: int) -> dict[str, object]:
    """The ``config.json`` section by which a folder says it is a speaker model (and how it reads)."""
    return {"task": TASK, "name": name, "base_model": base_model, "context": True, "max_length": max_length}


def read_speaker_config(path: Path) -> dict[str, object]:
    """The ``claimlens`` section of a speaker model folder; ``ValueError`` if it is not one."""
    where = path / "config.json"
    config = json.loads(where.read_text())
    own = config.get(CONFIG_KEY)
    if not isinstance(own, dict) or own.get("task") != TASK or not isinstance(own.get("max_length"), int):
        raise ValueError(
            f"{path} is not a speaker model: {where} has no {CONFIG_KEY!r} section with task {TASK!r}"
        )
    id2label = config.get("id2label", {})
    if {str(k): v for k, v in id2label.items()} != {str(i): t for i, t in enumerate(TAGS)}:
        raise ValueError(f"{where}: the model's tags {id2label} differ from the code's {list(TAGS)}")
    return own


def _check(sentences: object, labels: object) -> tuple[list[Sentence], list[str]]:
    if not isinstance(sentences, Sequence) or not isinstance(labels, Sequence) or isinstance(labels, str):
        raise ValueError("sentences and labels must be lists")
    if len(sentences) != len(labels):
        raise ValueError(f"got {len(labels)} labels for {len(sentences)} sentences")
    end = 0
    for i, (s, label) in enumerate(zip(sentences, labels, strict=True)):
        if not isinstance(s, Sentence):
            raise ValueError(
                f"sentences[{i}] must be a Sentence (from split_sentences), got {type(s).__name__}"
            )
        check_label(label, f"labels[{i}]")
        if not s.text.strip() or s.start < end or s.end - s.start != len(s.text):
            raise ValueError(
                f"sentences[{i}] ({s.start}-{s.end}) is empty, overlaps the one before, or its offsets "
                "do not fit its text: give one article's sentences in reading order"
            )
        end = s.end
    return list(sentences), list(labels)


class SpeakerExtractor:
    """A loaded speaker model: speakers and cues of one article's attributed sentences.

    >>> extractor = SpeakerExtractor.load("models/speakers")  # doctest: +SKIP
    >>> sentences = split_sentences("Three men were arrested, police said.")  # doctest: +SKIP
    >>> extractor.extract(sentences, ["official_statement"])[0].speaker  # doctest: +SKIP
    Span(text='police', start=25, end=31)
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.backend = TorchBackend(model)
        self.build = InputBuilder(tokenizer, max_length, context=True)
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 32) -> SpeakerExtractor:
        """Load a folder written by ``training.speakers_train`` (safetensors only)."""
        path = Path(path)
        check_model_dir(path)
        own = read_speaker_config(path)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model = AutoModelForTokenClassification.from_pretrained(
            path, use_safetensors=True, local_files_only=True, trust_remote_code=False
        )
        return cls(model, tokenizer, int(str(own["max_length"])), batch_size)

    def tag(self, texts: Sequence[str], contexts: Sequence[str | None]) -> list[list[TaggedSpan]]:
        """The SOURCE and CUE spans of each text (segment 0) and of its context (segment 1)."""
        if len(texts) != len(contexts):
            raise ValueError(f"got {len(contexts)} contexts for {len(texts)} texts")
        out: list[list[TaggedSpan]] = []
        for i in range(0, len(texts), self.batch_size):
            chunk = list(texts[i : i + self.batch_size])
            context = [c or "" for c in contexts[i : i + self.batch_size]]
            aligned = self.build.aligned(chunk, context)
            logits = self.backend(self.build.batch([a.encoded for a in aligned]))
            for row, a in enumerate(aligned):
                tags = logits[row, : len(a.segments)].argmax(-1).tolist()
                out.append(decode(tags, a, (chunk[row], context[row])))
        return out

    def extract(self, sentences: Sequence[Sentence], labels: Sequence[str]) -> list[Attribution | None]:
        """Per sentence, its ``Attribution``; None for ``other`` and where no speaker or cue was found.

        ``sentences`` are one article's, in reading order, with article offsets (as
        ``split_sentences`` gives them); ``labels`` are their labels. Each sentence is read
        with the one before it.
        """
        sentences, labels = _check(sentences, labels)
        wanted = [i for i, label in enumerate(labels) if label in ATTRIBUTED]
        previous = [sentences[i - 1] if i else None for i in range(len(sentences))]
        tagged = self.tag(
            [sentences[i].text for i in wanted], [p.text if (p := previous[i]) else None for i in wanted]
        )
        result: list[Attribution | None] = [None] * len(sentences)
        known: dict[str, SpeakerType] = {}
        for i, spans in zip(wanted, tagged, strict=True):
            before = result[i - 1] if i else None
            found = result[i] = attribution(spans, (sentences[i], previous[i]), labels[i], before, known)
            who = found and (found.antecedent or found.speaker)
            remember(known, labels[i], who.text if who else None)
        return result

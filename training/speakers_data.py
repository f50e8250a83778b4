"""PolNeAR's source and cue annotations as tagged sentence pairs, and span scores against them.

Each sentence of an article (split as ``inference.sentences`` splits it) is paired with its
previous sentence, the way the speaker model reads it. The sentence's own segment is tagged
with every source and cue span of every attribution inside it; the previous sentence's
segment only with the source and cue of an attribution that *continues* into the sentence
(its content reaches the sentence, its source and cue do not), so that the model learns to
point back only when the speaker is really one sentence earlier ("They added, …" / "They
must stop …"). A span cut by a sentence break is clipped to each side; a discontinuous BRAT
span (11 of 42,000 in train) becomes one span per fragment.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.inputs import Aligned
from inference.sentences import Sentence
from inference.speakers import TAGS, TaggedSpan
from inference.standoff import document_sentences
from training.weak import BratAttribution, BratSpan, polnear_articles, read_brat

SPLITS = ("train", "dev", "test")
IGNORE = -100  # the loss skips special tokens
_TRIM = string.whitespace + string.punctuation + "“”‘’—–"


@dataclass(frozen=True)
class SpeakerExample:
    """One sentence and its previous sentence, with gold spans in each one's own offsets."""

    doc: str
    idx: int
    text: str
    context: str | None
    spans: tuple[TaggedSpan, ...]

    def segment(self, segment: int) -> list[TaggedSpan]:
        return [s for s in self.spans if s.segment == segment]


def _clip(span: BratSpan | None, sentence: Sentence, segment: int) -> list[TaggedSpan]:
    """The fragments of ``span`` inside ``sentence``, in its offsets, without edge whitespace."""
    if span is None:
        return []
    role = "SOURCE" if span.kind == "Source" else "CUE"
    out = []
    for start, end in span.fragments:
        a, b = max(start, sentence.start), min(end, sentence.end)
        piece = sentence.text[a - sentence.start : b - sentence.start]
        if b <= a or not piece.strip():
            continue
        a += len(piece) - len(piece.lstrip())
        b -= len(piece) - len(piece.rstrip())
        out.append(TaggedSpan(role, segment, a - sentence.start, b - sentence.start))
    return out


def _touches(span: BratSpan | None, sentence: Sentence) -> bool:
    return span is not None and any(a < sentence.end and b > sentence.start for a, b in span.fragments)


def sentence_spans(
    attributions: Iterable[BratAttribution], sentence: Sentence, previous: Sentence | None
) -> tuple[TaggedSpan, ...]:
    """Gold spans of one pair: the sentence's own (segment 0) and those continuing into it (1)."""
    spans: list[TaggedSpan] = []
    for a in attributions:
        spans += _clip(a.source, sentence, 0) + _clip(a.cue, sentence, 0)
        continues = any(_touches(c, sentence) for c in a.content)
        if (
            previous is not None
            and continues
            and not (_touches(a.source, sentence) or _touches(a.cue, sentence))
        ):
            spans += _clip(a.source, previous, 1) + _clip(a.cue, previous, 1)
    return tuple(sorted(set(spans), key=lambda s: (s.segment, s.start, s.end, s.role)))


def read_article(root: Path, split: str, name: str, ann: Path) -> list[SpeakerExample]:
    """Every sentence of one PolNeAR article as a tagged pair."""
    doc = f"{split}/{name}"
    attributions = read_brat(ann)
    sentences = document_sentences(root, "polnear", doc)
    examples = []
    for idx, sentence in enumerate(sentences):
        previous = sentences[idx - 1] if idx else None
        spans = sentence_spans(attributions, sentence, previous)
        examples.append(SpeakerExample(doc, idx, sentence.text, previous.text if previous else None, spans))
    return examples


def read_split(root: str | Path, split: str, articles: int | None = None) -> list[SpeakerExample]:
    """The tagged pairs of a PolNeAR split (``train``, ``dev`` or ``test``), article by article.

    ``articles``: only that many articles, evenly spaced over the split's sorted names.

    >>> len(read_split("../shared/datasets", "dev", articles=2)) > 0  # doctest: +SKIP
    True
    """
    if split not in SPLITS:
        raise ValueError(f"unknown PolNeAR split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    found = polnear_articles(root, split)
    if not found:
        raise ValueError(f"no PolNeAR {split} articles with attributions under {root / 'polnear' / 'data'}")
    names = sorted(found)
    if articles and articles < len(names):  # spread over the list: names sort by publisher
        names = [names[i * len(names) // articles] for i in range(articles)]
    return [e for name in names for e in read_article(root, split, name, found[name])]


def keep_negatives(examples: list[SpeakerExample], fraction: float, seed: int) -> list[SpeakerExample]:
    """All pairs with a span, and ``fraction`` of those without (drawn with ``seed``)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"negatives must be a fraction in [0, 1], got {fraction}")
    rng = random.Random(seed)
    return [e for e in examples if e.spans or rng.random() < fraction]


def tag_ids(aligned: Aligned, spans: Sequence[TaggedSpan]) -> list[int]:
    """Per token, the index of its tag in ``TAGS`` (``IGNORE`` for special tokens).

    A token is inside a span when their character ranges overlap; the span's first token
    gets ``B-``, the rest ``I-``.
    """
    labels = []
    previous: TaggedSpan | None = None
    for segment, (a, b) in zip(aligned.segments, aligned.offsets, strict=True):
        if segment is None:
            labels.append(IGNORE)
            previous = None
            continue
        span = next((s for s in spans if s.segment == segment and a < s.end and b > s.start), None)
        if span is None:
            labels.append(TAGS.index("O"))
        else:
            labels.append(TAGS.index(("I-" if span == previous else "B-") + span.role))
        previous = span
    return labels


def _trim(text: str, span: TaggedSpan) -> tuple[int, int]:
    """A span without the whitespace and punctuation at its edges: what exact match compares."""
    piece = text[span.start : span.end]
    start = span.start + len(piece) - len(piece.lstrip(_TRIM))
    return start, max(start, span.end - (len(piece) - len(piece.rstrip(_TRIM))))


def span_counts(text: str, gold: Sequence[TaggedSpan], predicted: Sequence[TaggedSpan]) -> dict[str, int]:
    """Exact and overlap match counts of one role in one segment of ``text``."""
    g = [_trim(text, s) for s in gold]
    p = [_trim(text, s) for s in predicted]

    def hit(x: tuple[int, int], ys: list[tuple[int, int]]) -> bool:
        return any(x[0] < y[1] and y[0] < x[1] for y in ys)

    return {
        "gold": len(g),
        "predicted": len(p),
        "exact": len(set(g) & set(p)),
        "overlap_predicted": sum(hit(x, g) for x in p),
        "overlap_gold": sum(hit(x, p) for x in g),
    }


def span_scores(counts: dict[str, int]) -> dict[str, float]:
    """Exact and overlap precision, recall and F1 from summed ``span_counts``."""

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    n_pred, n_gold = max(counts["predicted"], 1), max(counts["gold"], 1)
    ep, er = counts["exact"] / n_pred, counts["exact"] / n_gold
    op, orr = counts["overlap_predicted"] / n_pred, counts["overlap_gold"] / n_gold
    scores = {"exact_p": ep, "exact_r": er, "exact_f1": f1(ep, er)}
    scores |= {"overlap_p": op, "overlap_r": orr, "overlap_f1": f1(op, orr)}
    return {k: round(v, 4) for k, v in scores.items()} | {
        "gold": counts["gold"],
        "predicted": counts["predicted"],
    }

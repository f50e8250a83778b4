"""Speaker and cue extraction: PolNeAR test spans, gold-labelled sentences, and the seed article.

    python -m benchmarks.speakers --model models/speakers

1. Spans: exact and overlap precision/recall/F1 of SOURCE and CUE spans in every sentence of
   the PolNeAR test articles (gold: PolNeAR's own annotations), and of the source tagged in the
   previous sentence when the sentence continues its attribution.
2. Sentences: on the PolNeAR test (and dev) articles that have hand-made sentence labels
   (``data/gold/*.jsonl``), each claim / denial / official_statement sentence through
   ``SpeakerExtractor.extract``: how often a speaker is returned, how often it overlaps a PolNeAR
   source of an attribution in that sentence, and how often the denial rule (the speaker's
   words) gives the type that the label implies on official_statement and claim sentences.
3. The seed article: its three official speakers on their sentences.

Writes ``benchmarks/results/speakers.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.seed_article import expected_rows
from inference.sentences import split_sentences
from inference.speaker_type import SpeakerType, official_by_words, remember, speaker_type
from inference.speakers import ATTRIBUTED, Attribution, SpeakerExtractor
from inference.standoff import document_sentences, read_standoff
from training.speakers_data import read_split
from training.speakers_train import evaluate
from training.weak import BratAttribution, polnear_articles, read_brat

LABELS_MD = Path("../shared/LABELS.md")
SEED = Path("../shared/seed_article.txt")
GOLD = tuple(Path("data/gold") / f"{split}.jsonl" for split in ("train", "dev", "test"))
# Sentence prefix → the speaker it must name (directly or as antecedent), and that speaker's head words.
SEED_SPEAKERS = (
    ("The Deputy Governor of Samangan announced", "The Deputy Governor of Samangan", "Governor"),
    ("Police in Balkh Province said", "Police in Balkh Province", "Police"),
    ("In another context, a NATO official stated", "a NATO official", "NATO official"),
    ("The official told Reuters", "a NATO official", "NATO official"),
    ("They added,", "a NATO official", "NATO official"),
    ("They must stop their attacks", "a NATO official", "NATO official"),  # the quotation goes on
)


def _overlaps(a: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(a[0] < b and s < a[1] for s, b in spans)


def gold_sentences(root: Path, split: str) -> dict[str, dict[int, str]]:
    """Hand-made labels of the sentences of one PolNeAR split: doc → idx → label."""
    labels: dict[str, dict[int, str]] = defaultdict(dict)
    for path in GOLD:
        for e in read_standoff(path, root):
            if e.doc.startswith(f"polnear:{split}/"):
                labels[e.doc.removeprefix("polnear:")][e.idx] = e.label
    return labels


def sentence_figures(extractor: SpeakerExtractor, root: Path, split: str) -> dict[str, Any]:
    """Per gold label: sentences, speaker returned, speaker right, and the denial rule's agreement.

    The rule is scored on official_statement and claim sentences, whose label says the type:
    on the speaker's words alone, and with the surnames typed by the article's earlier
    sentences (as ``extract`` types a denial).
    """
    anns = polnear_articles(root, split)
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for doc, by_idx in sorted(gold_sentences(root, split).items()):
        sentences = document_sentences(root, "polnear", doc)
        labels = [by_idx.get(i, "other") for i in range(len(sentences))]
        attributions = read_brat(anns[doc.partition("/")[2]])
        known: dict[str, SpeakerType] = {}
        for s, label, found in zip(sentences, labels, extractor.extract(sentences, labels), strict=True):
            if label not in ATTRIBUTED:
                continue
            _count(rows[label], (s.start, s.end), attributions, found, label, known)
            who = found and (found.antecedent or found.speaker)
            remember(known, label, who.text if who else None)
    return {label: dict(row) for label, row in sorted(rows.items())}


def _count(
    row: dict[str, int],
    sentence: tuple[int, int],
    attributions: list[BratAttribution],
    found: Attribution | None,
    label: str,
    known: dict[str, SpeakerType],
) -> None:
    start, end = sentence
    sources = [
        (f[0], f[1])
        for a in attributions
        if a.source
        and any(x < end and y > start for c in (a.source, a.cue, *a.content) if c for x, y in c.fragments)
        for f in a.source.fragments
    ]
    row["sentences"] += 1
    row["with_gold_source"] += bool(sources)
    if found is None or found.speaker is None:
        return
    row["speaker_returned"] += 1
    spans = [x for x in (found.speaker, found.antecedent) if x]
    row["speaker_right"] += bool(sources) and any(_overlaps((x.start, x.end), sources) for x in spans)
    if label != "denial":
        who = (found.antecedent or found.speaker).text
        expected = "official" if label == "official_statement" else "non_official"
        row["rule_typed"] += official_by_words(who) is not None
        row["rule_agrees_words"] += official_by_words(who) == expected
        row["rule_agrees_article"] += speaker_type("denial", who, known) == expected


def seed_speakers(
    extractor: SpeakerExtractor, labels_md: Path = LABELS_MD, seed: Path = SEED
) -> list[dict[str, Any]]:
    """The seed article, labelled as in LABELS.md: the speaker found for each of ``SEED_SPEAKERS``."""
    sentences = split_sentences(seed.read_text())
    labels = ["other"] * len(sentences)
    for abridged, label in expected_rows(labels_md):
        prefix = abridged.split("…")[0].strip()
        i = next(i for i, s in enumerate(sentences) if labels[i] == "other" and s.text.startswith(prefix))
        labels[i] = label
    found = extractor.extract(sentences, labels)
    rows = []
    for prefix, expected, head in SEED_SPEAKERS:
        i = next(i for i, s in enumerate(sentences) if s.text.startswith(prefix))
        a = found[i]
        who = (a.antecedent or a.speaker) if a else None
        ok = bool(who and head.lower() in who.text.lower() and who.text.lower() in expected.lower())
        rows.append(
            {
                "sentence": sentences[i].text[:90],
                "label": labels[i],
                "expected": expected,
                "speaker": a.speaker.text if a and a.speaker else None,
                "in_previous": bool(a and a.speaker_in_previous),
                "antecedent": a.antecedent.text if a and a.antecedent else None,
                "cue": a.cue.text if a and a.cue else None,
                "speaker_type": a.speaker_type if a else None,
                "ok": ok and a is not None and a.speaker_type == "official",
            }
        )
    return rows


def _print_spans(spans: dict[str, Any]) -> None:
    print(f"{'PolNeAR test':<16}{'gold':>6}{'pred':>6}  {'exact P/R/F1':<22}{'overlap P/R/F1':<22}")
    for key in ("source", "cue", "context_source"):
        s = spans[key]
        exact = f"{s['exact_p']:.3f}/{s['exact_r']:.3f}/{s['exact_f1']:.3f}"
        overlap = f"{s['overlap_p']:.3f}/{s['overlap_r']:.3f}/{s['overlap_f1']:.3f}"
        print(f"{key:<16}{s['gold']:>6}{s['predicted']:>6}  {exact:<22}{overlap:<22}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/speakers")
    parser.add_argument("--root", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--articles", type=int, default=None, help="only the first N test articles")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speakers.json"))
    args = parser.parse_args()
    extractor = SpeakerExtractor.load(args.model)
    started = time.perf_counter()
    examples = read_split(args.root, "test", args.articles)
    spans = evaluate(extractor, examples)
    _print_spans(spans)
    sentences = {split: sentence_figures(extractor, args.root, split) for split in ("test", "dev")}
    for split, figures in sentences.items():
        print(f"\ngold-labelled PolNeAR {split} sentences:")
        for label, row in figures.items():
            print(f"  {label:<19}" + ", ".join(f"{k} {v}" for k, v in row.items()))
    seed = seed_speakers(extractor)
    print(f"\nseed article: {sum(r['ok'] for r in seed)}/{len(seed)} official speakers found")
    for r in seed:
        print(
            f"  {'ok ' if r['ok'] else 'MISS'} {r['speaker']!s:<32}{r['antecedent']!s:<20}{r['cue']!s:<12}{r['sentence'][:50]}"
        )
    command = (
        "python -m benchmarks.speakers --model "
        + args.model
        + (f" --articles {args.articles}" if args.articles else "")
    )
    result = {
        "command": command,
        "model": args.model,
        "test_pairs": len(examples),
        "seconds": round(time.perf_counter() - started, 1),
        "spans": spans,
        "sentences": sentences,
        "seed_article": seed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

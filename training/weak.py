"""Weak supervision: documented rules that turn the shared datasets' own annotations into our labels.

These labels come from rules, not from reading: they are *weak* and named so
(``kind: weak`` in configs). Their precision against the hand-made gold is
measured by ``python -m benchmarks.data_stats`` and reported in ``data/README.md``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inference.records import Example, with_context
from inference.standoff import document_sentences, document_text, read_standoff

# The label guide's "Who is an official source", as a pattern over a source's words.
OFFICIAL_SOURCE = re.compile(
    r"\b(police|polic(e|ia)|ministry|minister|ministers|president|prime minister|premier|governor|mayor|"
    r"senator|sen\.|rep\.|congress(man|woman|men|women)?|lawmakers?|legislators?|parliament(ary)?|"
    r"spokes(man|woman|person|people)|officials?|authorities|department|agency|court|judge|justices?|"
    r"prosecutors?|attorney general|district attorney|army|military|pentagon|white house|kremlin|"
    r"state department|government|administration|secretary|cabinet|chancellor|commission(er)?|"
    r"fbi|cia|nato|united nations|u\.n\.|un|who|eu|european union|imf|world bank|sheriff|"
    r"coast guard|ambassador|embassy|council|regulators?|federal reserve|central bank|treasury|"
    r"ceo|company|statement|chairman|chairwoman|board)\b",
    re.IGNORECASE,
)
DENIAL_CUE = re.compile(
    r"\b(den(y|ies|ied|ying|ial)|reject(s|ed|ing)?|dismiss(es|ed|ing)?|disput(e|es|ed|ing)|"
    r"refut(e|es|ed|ing)|rebut(s|ted)?|contradict(s|ed|ing)?|not true|false|untrue|baseless|"
    r"propaganda|pleaded not guilty|groundless|debunk(s|ed)?|no truth|insist(s|ed)? (that )?(he|she|they) (was|were|did) not)\b",
    re.IGNORECASE,
)
# Attribution cues that report speech; beliefs and feelings ("figures", "likes") are not speech acts.
SPEECH_CUE = re.compile(
    r"\b(said|says|say|saying|told|tell|tells|announc\w*|stat(ed|es|ing)|claim\w*|confirm\w*|warn\w*|"
    r"urg\w*|call(ed|s)? (for|on)|promis\w*|vow\w*|accus\w*|alleg\w*|according to|add(ed|s)|"
    r"argu\w*|insist\w*|den\w*|reject\w*|dismiss\w*|disput\w*|deni\w*|explain\w*|report\w*|"
    r"tweet\w*|wrote|writes|declar\w*|assert\w*|predict\w*|suggest\w*|describ\w*|acknowledg\w*|"
    r"admit\w*|noted?|pointed out|recall\w*|replied|responded|asked|questioned|criticiz\w*|"
    r"complain\w*|threaten\w*|testif\w*|ruled|concluded|estimat\w*)\b",
    re.IGNORECASE,
)


def rule_label(cue: str, source: str) -> str:
    """The mapping for one reported assertion: deny cue → denial, official source → official, else claim."""
    if DENIAL_CUE.search(cue):
        return "denial"
    return "official_statement" if OFFICIAL_SOURCE.search(source) else "claim"


def _combine(labels: list[str]) -> str:
    """Precedence of the label guide over several assertions in one sentence."""
    for label in ("denial", "official_statement", "claim"):
        if label in labels:
            return label
    return "other"


@dataclass(frozen=True)
class BratSpan:
    """One text-bound BRAT annotation: its kind and ``[start, end)`` fragments in the article."""

    kind: str
    fragments: tuple[tuple[int, int], ...]
    text: str

    @property
    def start(self) -> int:
        return self.fragments[0][0]

    @property
    def end(self) -> int:
        return self.fragments[-1][1]


@dataclass(frozen=True)
class BratAttribution:
    """One PolNeAR attribution relation: source and cue (either may be missing) and its content."""

    source: BratSpan | None
    cue: BratSpan | None
    content: tuple[BratSpan, ...]


def read_brat(ann: Path) -> list[BratAttribution]:
    """The attribution relations of a PolNeAR ``.ann`` file, with character offsets into its article.

    >>> read_brat(Path("x_4e07.ann"))[0].source.text  # doctest: +SKIP
    'Police'
    """
    spans: dict[str, BratSpan] = {}
    relations: list[dict[str, str]] = []
    for line in ann.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if line.startswith("T") and len(parts) >= 3:
            kind, _, offsets = parts[1].partition(" ")
            try:
                fragments = tuple((int(a), int(b)) for a, b in (f.split() for f in offsets.split(";")))
            except ValueError:
                continue
            spans[parts[0]] = BratSpan(kind, fragments, parts[2])
        elif line.startswith("E") and len(parts) >= 2:
            relations.append(dict(p.split(":", 1) for p in parts[1].split() if ":" in p))
    return [
        BratAttribution(
            spans.get(rel.get("Source", "")),
            spans.get(rel.get("Cue", "")),
            tuple(spans[v] for k, v in rel.items() if k.startswith("Content") and v in spans),
        )
        for rel in relations
    ]


def polnear_articles(root: Path, split: str) -> dict[str, Path]:
    """The PolNeAR articles of one split that have a text: name → its first annotator's ``.ann``."""
    base = root / "polnear" / "data" / split
    anns: dict[str, Path] = {}
    for ann in sorted((base / "attributions").glob("*.ann")):
        anns.setdefault(ann.stem.rsplit("_", 1)[0], ann)  # one annotator per article
    return {name: ann for name, ann in anns.items() if (base / "text" / f"{name}.txt").is_file()}


def _brat_spans(ann: Path) -> list[tuple[str, str]]:
    """(cue key, source text) for each attribution relation with a cue."""
    return [
        (f"{a.cue.start}:{a.cue.end}:{a.cue.text}", a.source.text if a.source else "")
        for a in read_brat(ann)
        if a.cue
    ]


def polnear(root: Path) -> list[Example]:
    """PolNeAR: a sentence holding a speech-act attribution cue gets the rule label; else other."""
    examples: list[Example] = []
    for split in ("train", "dev", "test"):
        for name, ann in polnear_articles(root, split).items():
            doc = f"{split}/{name}"
            attributions = []
            for cue_key, source in _brat_spans(ann):
                start, end, cue = cue_key.split(":", 2)
                if SPEECH_CUE.search(cue):
                    attributions.append((int(start), int(end), cue, source))
            for idx, s in enumerate(document_sentences(root, "polnear", doc)):
                labels = [
                    rule_label(cue, source) for a, b, cue, source in attributions if s.start <= a < s.end
                ]
                examples.append(Example(f"polnear:{doc}", idx, s.text, _combine(labels)))
    return with_context(examples)


def newsdiscourse(root: Path) -> list[Example]:
    """NewsDiscourse: a ``Speech`` sentence gets the rule label over its own words; others are other."""
    examples: list[Example] = []
    base = root / "newsdiscourse" / "extracted"
    for ann in sorted(base.rglob("*.ann")):
        doc = str(ann.relative_to(base).with_suffix(""))
        speech = {
            line.split("\t")[2].strip()
            for line in ann.read_text(encoding="utf-8").splitlines()
            if line.startswith("T") and line.split("\t")[1].startswith("Speech ")
        }
        text = document_text(root, "newsdiscourse", doc)
        for idx, s in enumerate(document_sentences(root, "newsdiscourse", doc)):
            marker = re.search(r"(S\d+|H)[ \t]+$", text[max(0, s.start - 12) : s.start])
            label = rule_label(s.text, s.text) if marker and marker.group(1) in speech else "other"
            examples.append(Example(f"newsdiscourse:{doc}", idx, s.text, label))
    return with_context(examples)


def emergent(root: Path) -> list[Example]:
    """Emergent headlines: against → denial; for → claim; observing → official or claim by source words."""
    examples = []
    path = root / "emergent" / "url-versions-2015-06-14-clean-train.csv"
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            stance, headline = row["articleHeadlineStance"], row["articleHeadline"].strip()
            if not headline:
                continue
            if stance == "against":
                label = "denial"
            elif stance == "for":
                label = "claim"
            else:
                label = "official_statement" if OFFICIAL_SOURCE.search(headline) else "claim"
            examples.append(Example(f"emergent:{row['articleId']}", 0, headline, label))
    return examples


def fnc1(root: Path) -> list[Example]:
    """FNC-1 bodies paired with a ``disagree`` headline: their sentences with a denial cue → denial."""
    csv.field_size_limit(10_000_000)
    with (root / "fnc1" / "train_stances.csv").open(newline="", encoding="utf-8") as f:
        disagree = {row["Body ID"] for row in csv.DictReader(f) if row["Stance"] == "disagree"}
    examples = []
    for body_id in sorted(disagree, key=int):
        doc = f"train_bodies/{body_id}"
        for idx, s in enumerate(document_sentences(root, "fnc1", doc)):
            if DENIAL_CUE.search(s.text) and SPEECH_CUE.search(s.text):
                examples.append(Example(f"fnc1:{doc}", idx, s.text, "denial"))
    return examples


ADAPTERS: dict[str, Callable[[Path], list[Example]]] = {
    "polnear": polnear,
    "newsdiscourse": newsdiscourse,
    "emergent": emergent,
    "fnc1": fnc1,
}


def read_weak(adapter: str, root: Path) -> list[Example]:
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown weak adapter {adapter!r}; expected one of {', '.join(ADAPTERS)}")
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist; weak labels need the shared datasets")
    return ADAPTERS[adapter](root)


def precision_against_gold(adapter: str, root: Path, gold_paths: list[Path]) -> dict[str, dict[str, float]]:
    """Per weak label: how many weak sentences also have gold, and how many of those agree."""
    gold = {(e.doc, e.text): e.label for p in gold_paths for e in read_standoff(p, root)}
    result: dict[str, dict[str, float]] = {}
    for e in read_weak(adapter, root):
        g = gold.get((e.doc, e.text))
        if g is None:
            continue
        row = result.setdefault(e.label, {"n": 0, "correct": 0})
        row["n"] += 1
        row["correct"] += g == e.label
    for row in result.values():
        row["precision"] = round(row["correct"] / row["n"], 3)
    return result

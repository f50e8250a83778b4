"""Quote-aware sentence splitting that keeps character offsets.

A newline always ends a sentence (headlines, datelines and paragraphs stand on
their own lines in news text). Inside a line, a sentence ends after ``.``,
``!`` or ``?`` plus any closing quotes or brackets, when the next word starts a
new sentence: an upper-case letter, a digit or an opening quote. A lower-case
continuation (``"…," he said.`` / ``"Stop!" she shouted.``) and known
abbreviations (``U.S.``, ``Mr.``, ``Jan.``) do not end one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A static word list is easier to read as one block than one string per line.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt ft rev gen col lt maj capt sgt cpl adm cmdr gov sen rep
    pres supt insp det atty hon messrs mme mlle no nos vol fig pp ca approx est vs etc al
    inc ltd co corp bros dept univ assn ave blvd rd jan feb mar apr jun jul aug sep sept oct
    nov dec mon tue tues wed thu thur thurs fri sat sun ala ariz ark calif colo conn del fla
    ga ill ind kan ky la md mass mich minn miss mo mont neb nev okla ore pa tenn tex va vt
    wash wis wyo
    """.split()  # noqa: SIM905
)
_OPEN_QUOTES = "\"“‘«'"
_CLOSERS = "\"”’»')]"
# A candidate boundary: terminal punctuation, closers, then whitespace.
_BOUNDARY = re.compile(r"[.!?]+[" + re.escape(_CLOSERS) + r"]*(?=\s)")
# After a closing quote, "Name Surname said" is the quotation's attribution, not a new sentence.
_ATTRIBUTION = re.compile(
    r"\s+(?!(?:He|She|They|We|I|It|You|This|That|These|Those)\b)"
    r"(?:[A-Z][\w.'’-]*\s+){1,4}(?:said|says|asked|asks|told|tells|added|adds|shouted|wrote|"
    r"writes|replied|insisted|declared|tweeted|stated|warned|explained|continued|recalled)\b"
)
_STARTER = re.compile(r"\s+(?:[" + re.escape(_OPEN_QUOTES) + r"(\[]*)[A-Z0-9À-Þ]")


@dataclass(frozen=True)
class Sentence:
    """A sentence and its ``[start, end)`` character offsets in the source text."""

    text: str
    start: int
    end: int


def _ends_with_abbreviation(line: str, dot: int) -> bool:
    """True when the ``.`` at ``dot`` closes an abbreviation or an initial, not a sentence."""
    match = re.search(r"([A-Za-z.]+)$", line[:dot])
    if not match:
        return False
    word = match.group(1)
    if "." in word.strip("."):  # U.S. / a.m. / U.N.
        return True
    return (len(word) == 1 and word.isupper()) or word.lower() in _ABBREVIATIONS


def _split_line(line: str, offset: int) -> list[Sentence]:
    sentences: list[Sentence] = []
    start = 0
    for match in _BOUNDARY.finditer(line):
        end = match.end()
        if not _STARTER.match(line, end):
            continue
        punct = match.group(0).rstrip(_CLOSERS)
        if punct != match.group(0) and _ATTRIBUTION.match(line, end):
            continue
        if punct == "." and _ends_with_abbreviation(line, match.start()):
            continue
        sentences.append(_make(line, start, end, offset))
        start = end
    sentences.append(_make(line, start, len(line), offset))
    return [s for s in sentences if s.text]


def _make(line: str, start: int, end: int, offset: int) -> Sentence:
    chunk = line[start:end]
    lead = len(chunk) - len(chunk.lstrip())
    text = chunk.strip()
    return Sentence(text, offset + start + lead, offset + start + lead + len(text))


def split_sentences(text: str) -> list[Sentence]:
    """Split ``text`` into sentences; ``text[s.start:s.end] == s.text`` for each.

    >>> [s.text for s in split_sentences('"We will win," he said. Police denied it.')]
    ['"We will win," he said.', 'Police denied it.']
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    sentences: list[Sentence] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        sentences.extend(_split_line(line.rstrip("\r\n"), offset))
        offset += len(line)
    return sentences

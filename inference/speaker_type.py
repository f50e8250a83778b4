"""Official or not: the speaker type of an attributed sentence.

The sentence label decides where it can: an ``official_statement`` has an official speaker
and a ``claim`` a non-official one (``../shared/LABELS.md``). A ``denial`` may come from
either, so a rule over the speaker's words decides, following LABELS.md "Who is an official
source": insurgents, activists, residents, witnesses, relatives, experts, analysts,
anonymous sources, campaigns and *former* office holders are not official, and win over
an official word beside them ("a Taliban spokesman", "former officials"); governments,
ministries, heads of state, lawmakers, the military, police, courts, prosecutors, local
authorities, state agencies, international bodies and the spokespeople and officials of
all of these, and an organisation speaking through a statement, are official. A bare
pronoun ("they") that was not resolved to an earlier speaker has no type.
"""

from __future__ import annotations

import re
from typing import Literal

SpeakerType = Literal["official", "non_official"]

NON_OFFICIAL = re.compile(
    r"\b(taliban|militants?|insurgents?|rebels?|jihadists?|islamic state|isis|isil|al[- ]qaeda|hamas|"
    r"hezbollah|gunmen|fighters?|activists?|protesters?|campaigners?|campaign|residents?|villagers?|"
    r"(eye)?witness(es)?|relatives?|family|families|neighbou?rs?|experts?|analysts?|observers?|"
    r"critics?|supporters?|voters?|users?|bloggers?|anonymous|unidentified|unnamed|sources?|insiders?|"
    r"leaked|documents?|candidates?|former|ex-\w+|students?|citizens?|locals?|survivors?|victims?|"
    r"people familiar)\b",
    re.IGNORECASE,
)
OFFICIAL = re.compile(
    r"\b(police(men|women)?|officers?|ministry|ministries|ministers?|president|presidency|prime minister|"
    r"premier|governors?|mayors?|senators?|senate|representatives?|congress(man|woman|men|women)?|"
    r"lawmakers?|legislators?|parliament(ary|arians?)?|spokes(man|woman|person|people|men|women)|"
    r"officials?|authorit(y|ies)|department|agency|agencies|court|judges?|justices?|prosecutors?|"
    r"attorneys? general|district attorney|army|military|troops|soldiers?|generals?|commanders?|"
    r"pentagon|white house|kremlin|government|governments|administration|secretary|cabinet|"
    r"chancellor|commission(er)?|committee|united nations|world health organi[sz]ation|european union|"
    r"world bank|sheriff|coast guard|ambassadors?|embassy|council|regulators?|federal reserve|"
    r"central bank|treasury|alliance|mission|company|firm|bank|corporation|chief executive|executives?|"
    r"university|hospital|club|statement|chairman|chairwoman|board|state media|news agency)\b",
    re.IGNORECASE,
)
# Case-sensitive: acronyms ("who", "un" are also words), titles ending in a dot (no \b after the
# dot), and capitalised institutions ("the House", "the Secret Service").
OFFICIAL_CASED = re.compile(
    r"(?<!\w)(UN|U\.N\.|WHO|EU|NATO|FBI|CIA|IMF|MPs?|DHS|DOJ|Sen\.|Rep\.|Gov\.|Amb\.|House|Senate|"
    r"Congress|Service|Bureau|Office|Agency|Commission|Department|Ministry)(?!\w)"
)
PRONOUN = re.compile(r"(he|she|they|we|i|it|you|him|her|them)", re.IGNORECASE)

_BY_LABEL: dict[str, SpeakerType] = {"official_statement": "official", "claim": "non_official"}


def _by_words(speaker: str) -> SpeakerType | None:
    """What the speaker's own words say; None when no word decides."""
    if NON_OFFICIAL.search(speaker):
        return "non_official"
    return "official" if OFFICIAL.search(speaker) or OFFICIAL_CASED.search(speaker) else None


def official_by_words(speaker: str) -> SpeakerType | None:
    """The rule over a speaker's words (no deciding word: not official); None for a bare pronoun.

    >>> official_by_words("Police in Balkh Province"), official_by_words("a Taliban spokesman")
    ('official', 'non_official')
    """
    words = " ".join(speaker.split())
    if PRONOUN.fullmatch(words):
        return None
    return _by_words(words) or "non_official"


def surname(speaker: str) -> str | None:
    """The last capitalised word of a speaker's name, before any apposition, lower-cased.

    >>> surname("Rep. Adam B. Schiff of California, the ranking Democrat"), surname("Obama's")
    ('schiff', 'obama')
    """
    head = re.split(r",|\(| of | from ", speaker, maxsplit=1)[0]
    names = re.findall(r"[A-Z][A-Za-z'’-]+", head)
    return re.sub(r"['’]s$", "", names[-1]).lower() if names else None


def remember(known: dict[str, SpeakerType], label: str, speaker: str | None) -> None:
    """Note the type a sentence label gives its speaker, by surname, for the article's denials."""
    name = surname(speaker) if speaker else None
    if name and label in _BY_LABEL:
        known[name] = _BY_LABEL[label]


def speaker_type(
    label: str, speaker: str | None, known: dict[str, SpeakerType] | None = None
) -> SpeakerType | None:
    """The label's type where it decides; for a denial the rule over ``speaker`` (None: no speaker).

    A denial's speaker with no deciding word takes the type its surname had earlier in the
    article (``known``, filled by ``remember``: "Mr. Clyburn" after an official_statement by
    Rep. Clyburn), else is not official.

    >>> speaker_type("claim", "Police"), speaker_type("denial", "Mr. Clyburn", {"clyburn": "official"})
    ('non_official', 'official')
    """
    if label in _BY_LABEL:
        return _BY_LABEL[label]
    if label != "denial":
        raise ValueError(f"speaker type is for claim, denial or official_statement, not {label!r}")
    if not speaker:
        return None
    words = " ".join(speaker.split())
    if PRONOUN.fullmatch(words):
        return None
    name = surname(words)
    return _by_words(words) or (known or {}).get(name or "") or "non_official"

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
    r"premier|governors?|mayors?|senators?|sen\.|rep\.|representatives?|congress(man|woman|men|women)?|"
    r"lawmakers?|legislators?|parliament(ary|arians?)?|spokes(man|woman|person|people|men|women)|"
    r"officials?|authorit(y|ies)|department|agency|agencies|court|judges?|justices?|prosecutors?|"
    r"attorneys? general|district attorney|army|military|troops|soldiers?|generals?|commanders?|"
    r"pentagon|white house|kremlin|government|governments|administration|secretary|cabinet|"
    r"chancellor|commission(er)?|united nations|world health organi[sz]ation|european union|"
    r"world bank|sheriff|coast guard|ambassadors?|embassy|council|regulators?|federal reserve|"
    r"central bank|treasury|alliance|mission|company|firm|university|hospital|club|statement|"
    r"chairman|chairwoman|board|state media|news agency)\b",
    re.IGNORECASE,
)
# Acronyms only in capitals: "who", "un" and "eu" are also plain words.
OFFICIAL_ACRONYM = re.compile(r"\b(UN|U\.N\.|WHO|EU|NATO|FBI|CIA|IMF|MPs?|DHS|DOJ)\b")
PRONOUN = re.compile(r"(he|she|they|we|i|it|you|him|her|them)", re.IGNORECASE)

_BY_LABEL: dict[str, SpeakerType] = {"official_statement": "official", "claim": "non_official"}


def official_by_words(speaker: str) -> SpeakerType | None:
    """The rule over a speaker's words; None for a bare pronoun.

    >>> official_by_words("Police in Balkh Province"), official_by_words("a Taliban spokesman")
    ('official', 'non_official')
    """
    words = " ".join(speaker.split())
    if PRONOUN.fullmatch(words):
        return None
    if NON_OFFICIAL.search(words):
        return "non_official"
    return "official" if OFFICIAL.search(words) or OFFICIAL_ACRONYM.search(words) else "non_official"


def speaker_type(label: str, speaker: str | None) -> SpeakerType | None:
    """The label's type where it decides; for a denial the rule over ``speaker`` (None: no speaker).

    >>> speaker_type("claim", "Police"), speaker_type("denial", "the ministry")
    ('non_official', 'official')
    """
    if label in _BY_LABEL:
        return _BY_LABEL[label]
    if label != "denial":
        raise ValueError(f"speaker type is for claim, denial or official_statement, not {label!r}")
    return official_by_words(speaker) if speaker else None

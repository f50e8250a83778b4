import re

import pytest

from inference.sentences import split_sentences
from tests.conftest import SHARED


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


def test_offsets_point_into_the_text():
    text = 'Headline here\n\n  "We will win," he said.  Police denied it.\nBackground.'
    for s in split_sentences(text):
        assert text[s.start : s.end] == s.text


def test_closing_quote_and_attribution_stay_whole():
    assert texts('"We will not retreat," the commander said. Police disagreed.') == [
        '"We will not retreat," the commander said.',
        "Police disagreed.",
    ]
    assert texts('"Stop the attacks!" she shouted. Nobody listened.') == [
        '"Stop the attacks!" she shouted.',
        "Nobody listened.",
    ]


def test_split_before_a_new_quotation():
    assert texts('The minister said. "He will resign."') == ["The minister said.", '"He will resign."']
    assert texts('He told Reuters: "The mission is ongoing." They added more.') == [
        'He told Reuters: "The mission is ongoing."',
        "They added more.",
    ]


def test_abbreviations_and_initials_do_not_split():
    assert texts("The U.S. Army said Mr. Smith and Dr. J. Doe left on Jan. 3. Then rain fell.") == [
        "The U.S. Army said Mr. Smith and Dr. J. Doe left on Jan. 3.",
        "Then rain fell.",
    ]
    assert texts("Officials at the U.N. said it was calm.") == ["Officials at the U.N. said it was calm."]


def test_curly_quotes_and_newlines():
    assert texts("Title line\n“It is over.” The war went on.") == [
        "Title line",
        "“It is over.”",
        "The war went on.",
    ]


def test_empty_and_wrong_type():
    assert split_sentences("   \n\n") == []
    with pytest.raises(ValueError):
        split_sentences(None)  # type: ignore[arg-type]


@pytest.mark.skipif(not (SHARED / "seed_article.txt").is_file(), reason="needs ../shared")
def test_seed_article_splits_like_the_labelled_table():
    rows = re.findall(r"^\| (.+?) \| (\w+) \|$", (SHARED / "LABELS.md").read_text(), flags=re.MULTILINE)
    rows = [(s, label) for s, label in rows if label in {"claim", "denial", "official_statement", "other"}]
    sentences = texts((SHARED / "seed_article.txt").read_text())
    for abridged, _ in rows:
        prefix = abridged.split("…")[0].strip()
        assert any(s.startswith(prefix) for s in sentences), abridged
    assert len(sentences) == len(rows) + 2  # the section name and the repeated headline


def test_named_attribution_after_a_question_stays_whole():
    assert texts('"Is it not true?" Salo asked. The judge waited.') == [
        '"Is it not true?" Salo asked.',
        "The judge waited.",
    ]
    assert texts('"It is over." Police Chief Ana Ruiz said on Monday.') == [
        '"It is over." Police Chief Ana Ruiz said on Monday.'
    ]

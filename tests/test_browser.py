"""The article page in a real browser: Debian's /usr/bin/chromium, driven by Playwright, against the
real server (``make test-browser``; .ci/run installs both, this file installs nothing).

Every sentence, label, colour, count, filter, speaker, cue and download is checked against the
library's own ``Classifier.analyze`` on the same text; every request must stay on the server's
origin and no console or page error may happen beyond the ones a test provokes on purpose.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from benchmarks.harness import run_server
from inference.labels import LABELS
from inference.predict import Classifier, SentencePrediction, split_article
from tests.conftest import HOSTILE_SPEAKER, SPEAKER_ARTICLE

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response, Route

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seed_article.txt"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TITLE = "claimlens — article analysis"
KEY = "k-browser-0123456789abcdef"
# The badge colour of each label (app.css): the page's contract with its readers.
PALETTE = {
    "claim": "rgb(254, 243, 199)",
    "denial": "rgb(254, 226, 226)",
    "official_statement": "rgb(207, 250, 254)",
    "other": "rgb(243, 244, 246)",
}
CSV_COLUMNS = [
    "index", "start", "end", "label", "score", *(f"score_{label}" for label in LABELS),
    "truncated", "speaker", "speaker_type", "speaker_in_previous", "antecedent", "cue", "sentence",
]  # fmt: skip
HOSTILE = (
    'The army said <script>window.__pwned = 1; document.title = "pwned"</script> it was calm. '
    "<img src=x onerror=\"window.__pwned = 2; document.title = 'pwned'\"> Rebels denied it "
    "&amp; &lt;b&gt;laughed&lt;/b&gt; &#60;i&#62;."
)
# Row facts, read in the page: label, text, score and the computed colours.
ROWS_JS = """rows => rows.map(r => ({
    label: r.dataset.label,
    text: r.querySelector('.text').textContent,
    score: r.querySelector('.score').textContent,
    badge: r.querySelector('.badge').textContent,
    badgeColour: getComputedStyle(r.querySelector('.badge')).backgroundColor,
    border: getComputedStyle(r).borderLeftColor,
    visible: r.checkVisibility(),
}))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"the browser tests need {CHROMIUM}: apt-get install chromium (make test-browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def varied_model_dir(tiny_context_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny context model with its classifier aimed where the seed article's sentences differ.

    An untrained tiny model gives every sentence nearly the same features, so any classifier on
    them, sharpened or not, gives one label to all (``sharp_context_model_dir`` labels the whole
    seed article official_statement). Here each label reads one side of one of the two principal
    directions of the seed sentences' features, so the page has several labels to colour; which
    sentence gets which is still the library's to say.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    model_dir = tmp_path_factory.mktemp("varied") / "unit-context"
    shutil.copytree(tiny_context_model_dir, model_dir)
    classifier = Classifier.load(model_dir)
    head = classifier.backend.model.classifier  # type: ignore[attr-defined]  # the torch backend's
    features: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: features.append(args[0].clone()))
    classifier.analyze(SEED.read_text(encoding="utf-8"))
    hook.remove()
    x = torch.cat(features).double()
    mean = x.mean(0)
    _, sizes, directions = torch.linalg.svd(x - mean, full_matrices=False)
    unit = directions[:2] / (sizes[:2, None] / len(x) ** 0.5)  # one standard deviation: logit 1
    weight = 1.5 * torch.stack([unit[0], -unit[0], unit[1], -unit[1]])
    weights = load_file(model_dir / "model.safetensors")
    weights["classifier.weight"] = weight.float().contiguous()
    weights["classifier.bias"] = (-(weight @ mean)).float().contiguous()
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    return model_dir


@pytest.fixture(scope="module")
def server(varied_model_dir: Path) -> Iterator[str]:
    with run_server(varied_model_dir) as running:
        yield running.base


@pytest.fixture(scope="module")
def seed_result(varied_model_dir: Path) -> tuple[str, list[SentencePrediction]]:
    text = SEED.read_text(encoding="utf-8")
    return text, Classifier.load(varied_model_dir).analyze(text)


@dataclass
class Visit:
    """One page in its own browser context, every request, response and error recorded."""

    page: Page
    base: str
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    page_files: list[tuple[str, int]] = field(default_factory=list)

    def on_response(self, response: Response) -> None:
        if "/v1/" not in response.url:
            self.page_files.append((response.url, response.status))

    def check(self, expected_statuses: tuple[int, ...] = ()) -> None:
        """No request left the origin, the page's files all loaded, no page error, and no console
        error but the failed statuses a test provoked."""
        own = (f"{self.base}/", f"blob:{self.base}/")
        assert [url for url in self.requests if not url.startswith(own)] == []
        assert self.failed == []
        assert {url for url, _ in self.page_files} >= {f"{self.base}/", f"{self.base}/static/app.js"}
        assert [(url, status) for url, status in self.page_files if status not in (200, 304)] == []
        allowed = [f"status of {status} " for status in expected_statuses]
        assert [e for e in self.errors if not any(a in e for a in allowed)] == []
        assert self.page.title() == TITLE


@pytest.fixture
def visit(browser: Browser, server: str) -> Iterator[Visit]:
    with open_page(browser, server) as seen:
        yield seen


@contextmanager
def open_page(browser: Browser, base: str) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1120, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)  # the server shares two busy cores
    seen = Visit(page, base)
    context.on("request", lambda request: seen.requests.append(request.url))
    context.on("requestfailed", lambda request: seen.failed.append(request.url))
    context.on("response", seen.on_response)
    page.on("console", lambda msg: seen.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: seen.errors.append(f"page error: {err}"))
    response = page.goto(f"{base}/")
    assert response is not None and response.status == 200
    page.wait_for_selector("html[data-ready='true']", state="attached")
    try:
        yield seen
    finally:
        context.close()


def analyze(page: Page, text: str) -> int:
    """Paste ``text``, click Analyze, wait until the page has shown the answer; its status."""
    page.fill("#text", text)
    with page.expect_response(lambda r: r.url.endswith("/v1/analyze")) as answer:
        page.click("#analyze")
    page.wait_for_selector("#analyze:enabled")  # re-enabled once the answer is on the page
    return answer.value.status


def message_of(page: Page) -> str:
    return page.text_content("#message") or ""


def rows(page: Page) -> list[dict[str, Any]]:
    return page.eval_on_selector_all("#sentences > li", ROWS_JS)


def download(page: Page, button: str) -> str:
    with page.expect_download() as started:
        page.click(button)
    return Path(started.value.path()).read_text(encoding="utf-8")


def screenshot(page: Page, path: Path) -> None:
    """The whole page as a PNG in a 256-colour palette (``benchmarks.screenshot.save_png``)."""
    from benchmarks.screenshot import save_png

    save_png(page.screenshot(full_page=True), path)


def check_rows_match(shown: list[dict[str, Any]], want: list[SentencePrediction]) -> None:
    assert [r["text"] for r in shown] == [w.sentence for w in want]
    assert [r["label"] for r in shown] == [w.label for w in want]
    for r, w in zip(shown, want, strict=True):
        assert float(r["score"]) == pytest.approx(w.score, abs=0.006)
        assert r["badgeColour"] == PALETTE[w.label]
    borders = {r["label"]: r["border"] for r in shown}
    assert len(set(borders.values())) == len(borders)  # one edge colour per label


def test_the_seed_article_is_shown_as_the_library_labels_it(visit, seed_result):
    text, want = seed_result
    assert len({w.label for w in want}) >= 2, "the sharp tiny model should give several labels"
    assert analyze(visit.page, text) == 200
    shown = rows(visit.page)
    check_rows_match(shown, want)
    counts = {label: sum(w.label == label for w in want) for label in LABELS}
    legend = visit.page.eval_on_selector_all(
        "#legend li",
        "items => items.map(i => [i.querySelector('.legend-count').textContent,"
        " getComputedStyle(i.querySelector('.swatch')).backgroundColor])",
    )
    assert legend == [[str(counts[label]), PALETTE[label]] for label in LABELS]
    assert visit.page.text_content("#total") == str(len(want))
    assert visit.page.text_content("#model-name") == "model unit-context"
    screenshot(visit.page, ROOT / "docs" / "page.png")
    visit.check()


def test_a_filter_shows_only_its_label(visit, seed_result):
    text, want = seed_result
    analyze(visit.page, text)
    present = [label for label in LABELS if any(w.label == label for w in want)]
    target = "denial" if "denial" in present else present[-1]
    visit.page.click(f"label.filter-{target}")
    shown = rows(visit.page)
    assert [r["visible"] for r in shown] == [w.label == target for w in want]
    assert visit.page.text_content("#showing").startswith(f"Only {target.replace('_', ' ')}")
    visit.page.click("label.filter-all")
    assert all(r["visible"] for r in rows(visit.page))
    visit.check()


def test_the_downloads_hold_the_library_result(visit, seed_result):
    text, want = seed_result
    analyze(visit.page, text)
    data = json.loads(download(visit.page, "#download-json"))
    assert data["model"] == "unit-context"
    got = data["sentences"]
    assert [(s["sentence"], s["start"], s["end"], s["label"]) for s in got] == [
        (w.sentence, w.start, w.end, w.label) for w in want
    ]
    for s, w in zip(got, want, strict=True):
        assert s["scores"] == pytest.approx(w.scores, abs=1e-5)
    table = list(csv.reader(io.StringIO(download(visit.page, "#download-csv"), newline="")))
    assert table[0] == CSV_COLUMNS
    assert any('"' in w.sentence for w in want)  # the seed's quotes exercise the escaping
    for i, (row, w) in enumerate(zip(table[1:], want, strict=True), start=1):
        cells = dict(zip(CSV_COLUMNS, row, strict=True))
        assert (cells["index"], cells["start"], cells["end"]) == (str(i), str(w.start), str(w.end))
        assert (cells["label"], cells["sentence"], cells["truncated"]) == (
            w.label,
            w.sentence,
            str(w.truncated).lower(),
        )
        assert float(cells["score"]) == pytest.approx(w.score, abs=1e-5)
        for label in LABELS:
            assert float(cells[f"score_{label}"]) == pytest.approx(w.scores[label], abs=1e-5)
    visit.check()


def test_hostile_text_is_shown_literally_and_never_runs(visit):
    assert analyze(visit.page, HOSTILE) == 200
    page = visit.page
    assert page.evaluate("window.__pwned") is None
    assert page.eval_on_selector_all("#sentences script, #sentences img", "found => found.length") == 0
    shown = " ".join(r["text"] for r in rows(page))
    assert shown == " ".join(s.text for s in split_article(HOSTILE))
    for piece in (
        '<script>window.__pwned = 1; document.title = "pwned"</script>',
        "<img src=x onerror=",
        "&amp; &lt;b&gt;",
    ):
        assert piece in shown
    assert not any(url.endswith("/x") for url in visit.requests)  # the <img> never loaded
    visit.check()


def test_explain_marks_the_words_the_server_names(visit):
    page = visit.page
    page.check("#explain")
    with page.expect_response(lambda r: r.url.endswith("/v1/analyze")) as answer:
        page.fill("#text", "Police said two men were held. The rebels denied it.")
        page.click("#analyze")
    page.wait_for_selector("#analyze:enabled")
    assert json.loads(answer.value.request.post_data or "{}")["explain"] is True
    assert answer.value.status == 200
    for row, sentence in zip(
        page.query_selector_all("#sentences > li"), answer.value.json()["sentences"], strict=True
    ):
        spans = sentence["explanation"]["spans"]
        top = max(abs(s["score"]) for s in spans)
        # The page marks the sentence's own words with at least a tenth of the strongest weight.
        want = [s["text"] for s in spans if s["segment"] == "sentence" and abs(s["score"]) >= 0.1 * top]
        got = row.eval_on_selector_all(".text .mark-xp", "found => found.map(n => n.textContent)")
        assert "".join(got) == "".join(want) and want
        assert row.query_selector(".meta-why") is not None
    visit.check()


def test_server_errors_are_shown_with_their_message(browser, keyed_server):
    with open_page(browser, keyed_server) as seen:
        page = seen.page
        page.click("#key-box summary")  # the key's box is closed until it is needed
        page.fill("#api-key", KEY)
        assert analyze(page, "Police said so. " * 30) == 422  # 480 characters, over the 300 allowed
        message = message_of(page)
        assert (
            "The server refused this text (422)." in message
            and "text: String should have at most 300" in message
        )
        assert analyze(page, "Police said so. " * 300) == 413  # 4,800 bytes, over the 2,000 allowed
        assert "too large for the server (413)" in message_of(page)
        assert "request body over 2000 bytes" in message_of(page)
        # A full queue cannot be made on cue, so the 503 comes as the real server words it.
        page.route(
            "**/v1/analyze",
            lambda route: route.fulfill(
                status=503, json={"error": "the server is busy; retry shortly"}, headers={"Retry-After": "1"}
            ),
        )
        assert analyze(page, "Police said so.") == 503
        message = message_of(page)
        assert (
            "busy or still loading the model (503)" in message
            and "retry shortly. Try again in 1 s." in message
        )
        assert rows(page) == []
        seen.check(expected_statuses=(413, 422, 503))


# The fields other parts of the project add to /v1/analyze. Speaker and cue in article offsets,
# explanation words in their sentence's (inference.explain.Span), all counted in code points as
# Python counts: the emoji before a span would shift a UTF-16 count.
MARKED = 'Police 🚓 in Balkh said the town was calm. Rebels 😀 denied it. "We hold it," a fighter said.'
SECOND = "Rebels 😀 denied it."
FIGHTER = 'a fighter\n(unnamed, "local")'  # a speaker given as text: quotes, comma, newline for the CSV


def span(text: str, within: str = MARKED, **extra: Any) -> dict[str, Any]:
    start = within.index(text)
    return {"text": text, "start": start, "end": start + len(text), **extra}


EXTRAS: list[dict[str, Any]] = [
    {
        "speaker": span("Police 🚓 in Balkh"),
        "cue": span("said"),
        "speaker_type": "official",
        "explanation": [span("said", weight=0.9), span("calm", weight=0.3)],  # a bare list of words
    },
    {
        "speaker": span("Rebels"),
        "cue": span("denied"),
        "speaker_type": "non_official",
        "explanation": {
            "label": "denial",
            "context_share": 0.25,
            "spans": [
                span("denied", SECOND, segment="sentence", score=0.9),
                span("it", SECOND, segment="sentence", score=-0.1),
                span("calm", MARKED, segment="context", score=0.3),  # in the sentence before: listed only
            ],
        },
    },
    {"speaker": FIGHTER, "speaker_type": "non_official"},
]


def add_extras(route: Route) -> None:
    """The real server's answer, with the speaker, cue and explanation fields added."""
    response = route.fetch()
    body = response.json()
    for sentence, extra in zip(body["sentences"], EXTRAS, strict=True):
        sentence.update(extra)
    route.fulfill(response=response, json=body)


def marked(page: Page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "found => found.map(n => n.textContent)")


def test_speakers_cues_and_explanations_are_marked_when_present(visit):
    assert [s.text for s in split_article(MARKED)][1] == SECOND and len(split_article(MARKED)) == 3
    page = visit.page
    page.route("**/v1/analyze", add_extras)
    assert analyze(page, MARKED) == 200
    assert marked(page, ".text .mark-speaker") == ["Police 🚓 in Balkh", "Rebels"]
    assert marked(page, ".text .mark-cue") == ["said", "denied"]
    assert marked(page, ".text .mark-xp.xp-4") == ["said", "denied"]
    assert marked(page, ".text .mark-xp.xp-2") == ["calm"] and marked(page, ".text .xp-neg") == ["it"]
    speakers = marked(page, ".meta-speaker")
    assert "Police 🚓 in Balkh" in speakers[0] and speakers[0].endswith("official")
    assert FIGHTER in speakers[2] and speakers[2].endswith("non-official")
    assert marked(page, ".meta-why")[1] == "Whydenied, calm (previous sentence)context 25%"
    assert page.is_visible("#marks-legend")
    table = list(csv.DictReader(io.StringIO(download(page, "#download-csv"), newline="")))
    assert [(r["speaker"], r["speaker_type"], r["cue"]) for r in table] == [
        ("Police 🚓 in Balkh", "official", "said"),
        ("Rebels", "non_official", "denied"),
        (FIGHTER, "non_official", ""),
    ]
    data = json.loads(download(page, "#download-json"))
    assert [{k: s[k] for k in extra} for s, extra in zip(data["sentences"], EXTRAS, strict=True)] == EXTRAS
    visit.check()


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir: Path) -> Iterator[str]:
    """API keys on, and small limits that a test can go past."""
    env = {"CLAIMLENS_API_KEYS": KEY, "CLAIMLENS_MAX_TEXT_CHARS": "300", "CLAIMLENS_MAX_BODY_BYTES": "2000"}
    with run_server(tiny_model_dir, env=env) as running:
        yield running.base


def test_behind_an_api_key(browser, keyed_server):
    text = "Police said two men were held. The rebels denied it."
    with open_page(browser, keyed_server) as seen:
        page = seen.page
        assert analyze(page, text) == 401
        assert "This server needs an API key (401)." in message_of(page)
        assert rows(page) == [] and not page.is_visible("#results")
        assert page.is_visible("#api-key")  # opened for the user
        page.fill("#api-key", "k-wrong-0123456789abcdef")
        assert analyze(page, text) == 401
        assert "The API key was refused (401)." in message_of(page)
        page.fill("#api-key", KEY)
        assert analyze(page, text) == 200
        assert len(rows(page)) == 2 and not page.is_visible("#message")
        page.reload()  # the key is kept for the tab
        page.wait_for_selector("html[data-ready='true']", state="attached")
        assert page.input_value("#api-key") == KEY
        assert analyze(page, text) == 200
        seen.check(expected_statuses=(401,))


# Per row: the speaker and cue marked in its text, and its "who" lines.
WHO_JS = """rows => rows.map(r => ({
    speakerMarks: [...r.querySelectorAll('.text .mark-speaker')].map(n => n.textContent),
    cueMarks: [...r.querySelectorAll('.text .mark-cue')].map(n => n.textContent),
    speaker: r.querySelector('.meta-speaker')?.textContent ?? null,
    cue: r.querySelector('.meta-cue')?.textContent ?? null,
}))"""


@pytest.fixture(scope="module")
def speaker_server(official_model_dir: Path, tiny_speaker_model_dir: Path) -> Iterator[str]:
    """Every sentence official_statement, and the tiny lookup tagger as the speaker model."""
    with run_server(official_model_dir, ["--speakers", str(tiny_speaker_model_dir)]) as running:
        yield running.base


def test_the_servers_speakers_and_cues_are_shown_and_downloaded(
    browser, speaker_server, official_model_dir, tiny_speaker_model_dir
):
    want = Classifier.load(official_model_dir).analyze(SPEAKER_ARTICLE, speakers=tiny_speaker_model_dir)
    assert [bool(w.attribution) for w in want] == [True, True, False]
    with open_page(browser, speaker_server) as seen:
        page = seen.page
        assert analyze(page, SPEAKER_ARTICLE) == 200
        shown = page.eval_on_selector_all("#sentences > li", WHO_JS)
        assert shown == [
            # Marked inside the sentence where they stand, at the server's article offsets.
            {
                "speakerMarks": ["Commander Zorblatov"],
                "cueMarks": ["said"],
                "speaker": "SpeakerCommander Zorblatovofficial",
                "cue": "Cuesaid",
            },
            # Named in the previous sentence: listed under this one, marked only where it stands.
            {
                "speakerMarks": [],
                "cueMarks": [],
                "speaker": "SpeakerCommander Zorblatovofficialin the previous sentence",
                "cue": "Cuesaid",
            },
            {"speakerMarks": [], "cueMarks": [], "speaker": None, "cue": None},
        ]
        data = json.loads(download(page, "#download-json"))
        fields = ("speaker", "cue", "speaker_type", "speaker_in_previous", "antecedent")
        assert [{k: s[k] for k in fields} for s in data["sentences"]] == [
            asdict(w.attribution) if w.attribution else dict.fromkeys(fields) for w in want
        ]
        table = list(csv.DictReader(io.StringIO(download(page, "#download-csv"), newline="")))
        columns = ("speaker", "speaker_type", "speaker_in_previous", "antecedent", "cue")
        assert [tuple(r[c] for c in columns) for r in table] == [
            ("Commander Zorblatov", "official", "false", "", "said"),
            ("Commander Zorblatov", "official", "true", "", "said"),
            ("", "", "", "", ""),
        ]
        seen.check()


def test_a_hostile_speaker_is_shown_as_text_and_never_runs(browser, speaker_server):
    text = f"{HOSTILE_SPEAKER} said the bridge was closed."
    with open_page(browser, speaker_server) as seen:
        page = seen.page
        assert analyze(page, text) == 200
        assert page.evaluate("window.pwned") is None
        assert page.eval_on_selector_all("#sentences img, #sentences script", "found => found.length") == 0
        assert marked(page, ".text .mark-speaker") == [HOSTILE_SPEAKER]
        assert HOSTILE_SPEAKER in (page.text_content(".meta-speaker") or "")
        assert rows(page)[0]["text"] == text
        assert not any(url.endswith("/x") for url in seen.requests)  # the <img> never loaded
        seen.check()

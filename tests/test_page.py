"""The article page at ``/``: served with a strict Content-Security-Policy, its files only, open
without an API key while the API stays closed, packaged in the wheel, and never a way to run
someone's text as code (the browser half of that is tests/test_browser.py)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inference.app import create_app
from inference.page import FILES, STATIC
from inference.settings import Settings
from tests.conftest import HOSTILE_SPEAKER

ROOT = Path(__file__).resolve().parent.parent
KEY = "k-page-0123456789abcdef"
HOSTILE = (
    'The army said <script>window.__pwned = 1; document.title = "pwned"</script> it was calm. '
    '<img src=x onerror="window.__pwned = 2"> Rebels denied it &amp; &lt;b&gt;laughed&lt;/b&gt;.'
)


@pytest.fixture(scope="module")
def page_client() -> TestClient:
    # No lifespan (no `with`): the page needs no model.
    return TestClient(create_app(Settings(model_dir="unused")))


def policy(header: str) -> dict[str, list[str]]:
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {d[0]: d[1:] for d in directives}


def test_the_page_is_served_with_a_strict_policy(page_client):
    response = page_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>claimlens" in response.text
    csp = policy(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


class _Markup(HTMLParser):
    """Collects what a strict policy would block: inline script and style, handlers, outside URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [name for name in found if name.startswith("on") or name == "style"]
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "action")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")


def test_the_page_has_no_inline_code_and_names_only_its_own_files(page_client):
    markup = _Markup()
    markup.feed(page_client.get("/").text)
    assert markup.scripts == [{"src": "static/app.js", "defer": None}]
    assert markup.inline == []
    assert sorted(markup.urls) == sorted(f"static/{name}" for name in FILES)


def test_the_static_files_are_served_and_nothing_else(page_client):
    for name, media_type in FILES.items():
        response = page_client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.content == (STATIC / name).read_bytes()
        assert "content-security-policy" in response.headers
    for path in ("/static/index.html", "/static/../app.py", "/static/%2e%2e%2fpage.py", "/static/"):
        assert page_client.get(path).status_code == 404, path
    assert "/" not in page_client.get("/openapi.json").json()["paths"]


def test_the_script_builds_the_page_from_text_only():
    script = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in script, sink
    # Nothing is fetched from anywhere but this origin: no absolute URL in any file.
    for name in (*FILES, "index.html"):
        text = (STATIC / name).read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9]", text, re.IGNORECASE), name


def test_with_api_keys_the_page_is_open_and_the_api_is_not():
    client = TestClient(create_app(Settings(model_dir="unused", api_keys=(KEY,))))
    for path in ("/", *(f"/static/{name}" for name in FILES)):
        assert client.get(path).status_code == 200, path
    for response in (
        client.post("/v1/analyze", json={"text": "Police said so."}),
        client.get("/v1/model"),
        client.get("/docs"),
        client.get("/static/not-a-file.js"),
    ):
        assert response.status_code == 401
        assert "API key" in response.json()["error"]


def test_hostile_text_comes_back_as_json_text(tiny_model_dir):
    # The server never renders what it is given: the markup comes back verbatim inside JSON.
    with TestClient(create_app(Settings(model_dir=str(tiny_model_dir)))) as client:
        response = client.post("/v1/analyze", json={"text": HOSTILE})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    sentences = [s["sentence"] for s in response.json()["sentences"]]
    joined = " ".join(sentences)
    for piece in (
        "<script>window.__pwned = 1;",
        '<img src=x onerror="window.__pwned = 2">',
        "&amp; &lt;b&gt;",
    ):
        assert piece in joined
    for s in response.json()["sentences"]:
        assert HOSTILE[s["start"] : s["end"]] == s["sentence"]


def test_a_hostile_speaker_comes_back_as_json_text(official_model_dir, tiny_speaker_model_dir):
    text = f"{HOSTILE_SPEAKER} said the bridge was closed."
    settings = Settings(model_dir=str(official_model_dir), speaker_model_dir=str(tiny_speaker_model_dir))
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/analyze", json={"text": text})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    (sentence,) = response.json()["sentences"]
    # The markup is the speaker's text, verbatim; only the page decides how to show it (as text).
    assert sentence["speaker"] == {"text": HOSTILE_SPEAKER, "start": 0, "end": len(HOSTILE_SPEAKER)}


def test_the_wheel_carries_the_page():
    # setuptools packages only the data files pyproject names: every static file must match.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["inference"]
    files = sorted(p.relative_to(STATIC.parent).as_posix() for p in STATIC.iterdir())
    assert files == sorted(["static/index.html", *(f"static/{name}" for name in FILES)])
    for path in files:
        assert any(fnmatch(path, pattern) for pattern in patterns), path

"""A screenshot of the article page with a real model, for the README.

    python -m benchmarks.screenshot --model models/default --speakers models/speakers \
        --out docs/page_real.png

Starts ``claimlens serve`` on a free loopback port, opens ``/`` in Debian's headless chromium
(Playwright drives that binary; it downloads no browser), pastes the seed article, waits for the
answer and saves the whole page as a 256-colour PNG. Fails on any browser console error.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # polling a child process's port: there is no event to wait on
    raise SystemExit(f"the server was not ready in {timeout_s:.0f} s")


def shoot(base: str, article: str, out: Path) -> None:
    """Paste ``article`` into the page at ``base`` and save the answered page to ``out``."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1120, "height": 900}).new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base + "/")
        page.fill("#text", article)
        with page.expect_response(lambda r: r.url.endswith("/v1/analyze")):
            page.click("#analyze")
        page.wait_for_selector("#analyze:enabled")
        png = page.screenshot(full_page=True)
        browser.close()
    if errors:
        raise SystemExit(f"browser console errors: {errors}")
    save_png(png, out)


def save_png(png: bytes, out: Path) -> None:
    """A page screenshot as a 256-colour PNG, about a third of the size (also the browser test's)."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, dither=Image.Dither.NONE).save(out, optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--speakers")
    parser.add_argument("--article", type=Path, default=Path("../shared/seed_article.txt"))
    parser.add_argument("--out", type=Path, default=Path("docs/page_real.png"))
    args = parser.parse_args(argv)
    port = _free_port()
    command = [sys.executable, "-m", "inference", "serve", "--model", args.model, "--port", str(port)]
    if args.speakers:
        command += ["--speakers", args.speakers]
    server = subprocess.Popen(command, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server)
        shoot(base, args.article.read_text(encoding="utf-8"), args.out)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

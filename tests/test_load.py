"""A bounded load test of the real server on loopback: concurrent clients, a mix of routes.

Eight clients post a mix of ``/v1/classify`` (1-20 sentences) and ``/v1/analyze`` requests to
``python -m inference serve`` (the tiny model, micro-batching on as by default) for five seconds,
after a short warm-up. No answer may be a 5xx, every request sent must be answered, each 200 must
answer its own request (as many predictions as sentences sent; analyze's sentences and offsets
as the splitter gives them), and the server's memory must not keep growing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import rss_mb, run_server
from benchmarks.serve import Shot, drive
from inference.predict import split_article
from tests.conftest import ROOT, SAMPLE

CLIENTS = 8
WARMUP_S = 1.5
LOAD_S = 5.0


def _sentences() -> list[str]:
    corpus = ROOT / "data" / "corpus" / "test.jsonl"
    texts = [t for t, _ in SAMPLE]
    if corpus.is_file():
        with corpus.open(encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f if line.strip()]
    return texts


def _classify(sentences: list[str]) -> Shot:
    def expect(body: Any) -> bool:
        return len(body["predictions"]) == len(sentences)

    return Shot("/v1/classify", json.dumps({"sentences": sentences}).encode(), len(sentences), expect)


def _analyze(text: str) -> Shot:
    want = [(s.text, s.start, s.end) for s in split_article(text)]

    def expect(body: Any) -> bool:
        return [(s["sentence"], s["start"], s["end"]) for s in body["sentences"]] == want

    return Shot("/v1/analyze", json.dumps({"text": text}).encode(), len(want), expect)


def mixed_shots(seed: int = 0, size: int = 300) -> Callable[[int], Iterator[Shot]]:
    """Prebuilt requests, about three classify to one analyze; each client starts elsewhere."""
    rng = random.Random(seed)
    texts = _sentences()
    pool = []
    for _ in range(size):
        if rng.random() < 0.75:
            pool.append(_classify(rng.sample(texts, rng.randint(1, 20))))
        else:
            separator = rng.choice([" ", "\n\n"])
            pool.append(_analyze(separator.join(rng.sample(texts, rng.randint(1, 12)))))

    def client_shots(index: int) -> Iterator[Shot]:
        i = index * len(pool) // CLIENTS
        while True:
            yield pool[i % len(pool)]
            i += 1

    return client_shots


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path):
    with run_server(tiny_model_dir) as running:
        yield running


def test_concurrent_mixed_load_is_answered_without_errors_or_growth(server):
    shots = mixed_shots()
    warmup = drive(server.base, shots, CLIENTS, WARMUP_S, timeout_s=30)
    assert warmup.server_errors == 0 and warmup.dropped == 0, warmup.summary()
    rss_start = rss_mb(server.pid)

    load = drive(server.base, shots, CLIENTS, LOAD_S, timeout_s=30)
    rss_end = rss_mb(server.pid)
    summary = load.summary()
    print(
        f"\n{load.sent} requests ({summary['requests_per_s']} /s, {summary['sentences_per_s']} sentences/s,"
        f" p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms); statuses {summary['statuses']};"
        f" server RSS {rss_start:.1f} MB after warm-up, {rss_end:.1f} MB at the end"
    )

    assert server.proc.poll() is None, server.log_tail()
    assert load.sent >= CLIENTS, summary  # the load did happen
    assert load.server_errors == 0, (summary, server.log_tail())
    assert load.dropped == 0 and not load.exceptions, summary
    assert load.statuses == {200: load.sent}, summary  # valid requests are all accepted
    assert load.wrong == 0, summary  # every answer is for its own request
    allowed = max(0.15 * rss_start, 30.0)
    assert rss_end <= rss_start + allowed, f"RSS grew from {rss_start:.1f} to {rss_end:.1f} MB"

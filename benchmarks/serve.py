"""The real HTTP server under concurrent single-sentence traffic, micro-batching on and off.

    python -m benchmarks.serve --model models/default [--backend onnx --quantize int8]
        [--clients 16] [--seconds 20] [--quick] [--repeats 3]

Each mode starts a fresh ``python -m inference serve`` on a free loopback port, warms it up,
then lets ``--clients`` threads (one keep-alive ``http.client`` connection each) post one real sentence
per ``/v1/classify`` request for ``--seconds`` (``--quick``: 8). Single-sentence requests are
the live-traffic case that micro-batching is for. Per mode it reports requests/s, sentences/s,
p50/p99 latency, errors (non-200 or no response), dropped requests (sent, never answered) and
the server's RSS at the start and end of the load, and compares sentences/s with the offline
batch throughput of the same model in this process. Prints a table and writes
``benchmarks/results/serve.json``.

The clients run on the same machine as the server and take CPU from it: the client's own CPU
time is reported so that the numbers can be read with that in mind. On a machine shared with
other work, ``--repeats N`` runs the modes N times, interleaved, and reports each mode's median
run; the 1-minute load average before each run is kept in the JSON.

``drive`` is reused by ``tests/test_load.py``; the server process itself is run by
``benchmarks.harness``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from benchmarks.cpu import cpu_name
from benchmarks.harness import cpu_s, peak_rss_mb, rss_mb, run_server
from benchmarks.table import print_table, write_json

RESULTS = Path("benchmarks/results")
CORPUS = Path("data/corpus/test.jsonl")


@dataclass(frozen=True)
class Shot:
    """One request as the load driver sends it: a path, a prebuilt JSON body, how many
    sentences a 200 answer labels, and optionally a test of that answer's JSON."""

    path: str
    body: bytes
    sentences: int = 1
    expect: Callable[[Any], bool] | None = None


@dataclass
class LoadResult:
    """What a bounded load run saw. ``sent`` counts requests written to the server;
    ``answered`` those that got any HTTP response; the difference are dropped requests.
    ``wrong``: 200 answers that failed their shot's ``expect``."""

    clients: int
    seconds: float
    sent: int = 0
    answered: int = 0
    sentences: int = 0
    wrong: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def dropped(self) -> int:
        return self.sent - self.answered

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        """Requests that did not get a 200: other statuses, and no response at all."""
        return self.sent - self.ok

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def add(self, other: LoadResult) -> None:
        """Count ``other``'s requests in this result too."""
        self.sent += other.sent
        self.answered += other.answered
        self.sentences += other.sentences
        self.wrong += other.wrong
        self.statuses.update(other.statuses)
        self.exceptions.update(other.exceptions)
        self.latencies_ms.extend(other.latencies_ms)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "requests_per_s": round(self.ok / self.seconds, 1),
            "sentences_per_s": round(self.sentences / self.seconds, 1),
            "p50_ms": round(self.percentile_ms(50), 1),
            "p99_ms": round(self.percentile_ms(99), 1),
            "errors": self.errors,
            "dropped": self.dropped,
            "wrong": self.wrong,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "exceptions": dict(self.exceptions),
            "wall_s": round(self.seconds, 2),
            "client_cpu_s": round(self.client_cpu_s, 2),
        }


def drive(
    base: str,
    shots: Callable[[int], Iterator[Shot]],
    clients: int,
    seconds: float,
    timeout_s: float = 60.0,
) -> LoadResult:
    """``clients`` threads post as fast as answers come back, each over one keep-alive
    connection, until ``seconds`` have passed; then every thread finishes its last request.

    ``shots(client_index)`` yields the requests of one client, forever; their bodies should be
    prebuilt so that the client spends little CPU of its own. A 200 answer counts its
    sentences, and one that fails its ``expect`` counts as ``wrong``. Bounded: nothing new is
    sent after the deadline, and a request in flight then waits at most ``timeout_s``.
    """
    start = threading.Barrier(clients + 1)
    deadline = [0.0]  # set once every client is ready
    done: list[LoadResult] = []
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            done.append(_client(base, shots(index), timeout_s, start, deadline))
        except BaseException as err:  # reported by the caller, never lost with its thread
            failures.append(err)
            start.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    deadline[0] = time.monotonic() + seconds
    began = time.perf_counter()
    with suppress(threading.BrokenBarrierError):  # a client failed first: its error is raised below
        start.wait(timeout=60)
    for t in threads:
        t.join(seconds + timeout_s + 30)
    result = LoadResult(clients=clients, seconds=time.perf_counter() - began)
    result.client_cpu_s = time.process_time() - cpu0
    if failures:
        raise RuntimeError(f"a load client failed: {failures[0]!r}") from failures[0]
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a load client did not finish")
    for part in done:
        result.add(part)
    return result


def _client(
    base: str, source: Iterator[Shot], timeout_s: float, start: threading.Barrier, deadline: list[float]
) -> LoadResult:
    """One client's requests, one after another, from the barrier until ``deadline[0]``."""
    mine = LoadResult(clients=1, seconds=0.0)
    connection = _Connection(base, timeout_s)
    try:
        start.wait(timeout=60)
        while time.monotonic() < deadline[0]:
            shot = next(source)
            mine.sent += 1
            t0 = time.perf_counter()
            try:
                status, body = connection.post(shot.path, shot.body)
            except (OSError, http.client.HTTPException) as err:
                mine.exceptions[type(err).__name__] += 1
                continue
            mine.latencies_ms.append((time.perf_counter() - t0) * 1000)
            mine.answered += 1
            mine.statuses[status] += 1
            if status == 200:
                mine.sentences += shot.sentences
                mine.wrong += shot.expect is not None and not _expected(shot, body)
    finally:
        connection.close()
    return mine


class _Connection:
    """One keep-alive HTTP/1.1 connection, reopened after an error.

    ``http.client`` rather than httpx: the load runs on the server's own cores, and httpx
    spends several times more CPU per request.
    """

    def __init__(self, base: str, timeout_s: float) -> None:
        url = urlsplit(base)
        self.http = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout_s)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            self.http.request("POST", path, body, {"Content-Type": "application/json"})
            response = self.http.getresponse()
            return response.status, response.read()
        except BaseException:
            self.http.close()  # the next request opens a fresh connection
            raise

    def close(self) -> None:
        self.http.close()


def _expected(shot: Shot, body: bytes) -> bool:
    assert shot.expect is not None
    try:
        return bool(shot.expect(json.loads(body)))
    except (ValueError, KeyError, TypeError):
        return False


def single_sentences(
    texts: Sequence[str], clients: int, per_request: int = 1
) -> Callable[[int], Iterator[Shot]]:
    """``per_request`` sentences per ``/v1/classify`` request; each client starts elsewhere in ``texts``."""
    groups = [list(texts[i : i + per_request]) for i in range(0, len(texts) - per_request + 1, per_request)]
    shots = [Shot("/v1/classify", json.dumps({"sentences": g}).encode(), sentences=len(g)) for g in groups]

    def client_shots(index: int) -> Iterator[Shot]:
        i = index * len(shots) // max(clients, 1)
        while True:
            yield shots[i % len(shots)]
            i += 1

    return client_shots


def corpus_texts(path: Path = CORPUS) -> list[str]:
    with path.open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise SystemExit(f"no sentences in {path}")
    return texts


def offline_throughput(
    model: str, backend: str, quantize: str, texts: list[str], passes: int = 3
) -> tuple[float, float]:
    """Sentences per second of ``Classifier.predict`` over all ``texts`` in one call, in-process
    (the best of ``passes`` calls, since other work on a shared machine only ever slows one
    down), and that call's CPU milliseconds per sentence (all threads)."""
    from inference.predict import Classifier

    clf = Classifier.load(model, backend=backend, quantize=quantize)
    clf.predict(texts[:16])  # warm-up: first calls allocate and pick kernels
    best, best_cpu = float("inf"), float("inf")
    for _ in range(passes):
        started, cpu = time.perf_counter(), time.process_time()
        clf.predict(texts)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return len(texts) / best, 1000 * best_cpu / len(texts)


def serve_run(
    name: str,
    model: str,
    server_args: list[str],
    texts: list[str],
    clients: int,
    seconds: float,
    warmup_s: float,
    per_request: int = 1,
) -> dict[str, Any]:
    shots = single_sentences(texts, clients, per_request)
    load_before = os.getloadavg()[0]
    with run_server(model, server_args) as server:
        drive(server.base, shots, clients, warmup_s)
        rss_start, cpu_start = rss_mb(server.pid), cpu_s(server.pid)
        load = drive(server.base, shots, clients, seconds)
        rss_end, cpu_end = rss_mb(server.pid), cpu_s(server.pid)
        peak = peak_rss_mb(server.pid)
        alive = server.proc.poll() is None
    if not alive:
        raise RuntimeError(f"the server died during the {name} run")
    return {
        "name": name,
        "server_args": server_args,
        "loadavg_1m_before": round(load_before, 2),
        **load.summary(),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(peak, 1),
        # The server's CPU (model included) per request: steadier than throughput on a busy machine.
        "server_cpu_ms_per_request": round(1000 * (cpu_end - cpu_start) / max(load.ok, 1), 2),
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median sentences/s (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["sentences_per_s"])
    return {k: v for k, v in ordered[(len(ordered) - 1) // 2].items() if k != "repeat"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=20.0, help="load per mode (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured load first (default 2 s)")
    parser.add_argument("--quick", action="store_true", help="8 s per mode")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the modes this many times, interleaved, and report each mode's median run",
    )
    parser.add_argument(
        "--batch-wait-ms", type=float, help="micro-batching window of the first mode (default: the server's)"
    )
    parser.add_argument(
        "--per-request",
        type=int,
        default=1,
        help="sentences per request (default 1: live single-sentence traffic)",
    )
    parser.add_argument("--threads", type=int, help="the server's model threads (default: all cores)")
    parser.add_argument("--data", type=Path, default=CORPUS, help="JSONL with a 'text' field per row")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    return parser


def _modes(args: argparse.Namespace) -> dict[str, list[str]]:
    runtime = ["--backend", args.backend, "--quantize", args.quantize]
    if args.threads:
        runtime += ["--threads", str(args.threads)]
    batching = [] if args.batch_wait_ms is None else ["--batch-wait-ms", str(args.batch_wait_ms)]
    return {"micro_batching": [*runtime, *batching], "no_batching": [*runtime, "--batch-wait-ms", "0"]}


HEADER = [
    "mode", "requests/s", "sentences/s", "% of offline", "p50 ms", "p99 ms", "errors", "dropped",
    "RSS start MB", "RSS end MB", "client CPU s", "server CPU ms/request",
]  # fmt: skip


def _print_table(runs: list[dict[str, Any]], heading: str) -> None:
    print(f"\n{heading}\n")
    print_table(HEADER, [_cells(r) for r in runs])


def _cells(r: dict[str, Any]) -> list[str]:
    return [
        r["name"],
        f"{r['requests_per_s']:.0f}",
        f"{r['sentences_per_s']:.0f}",
        f"{r['pct_of_offline']:.0f}%",
        f"{r['p50_ms']:.1f}",
        f"{r['p99_ms']:.1f}",
        str(r["errors"]),
        str(r["dropped"]),
        f"{r['rss_start_mb']:.0f}",
        f"{r['rss_end_mb']:.0f}",
        f"{r['client_cpu_s']:.1f}",
        f"{r['server_cpu_ms_per_request']:.2f}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    from inference.backends import check_choice, default_threads

    try:
        check_choice(args.backend, args.quantize)
    except ValueError as err:
        parser.error(str(err))
    if args.clients < 1 or args.repeats < 1 or args.per_request < 1:
        parser.error("--clients, --repeats and --per-request must be at least 1")
    seconds = 8.0 if args.quick else args.seconds
    texts = corpus_texts(args.data)
    modes = _modes(args)

    # Offline first, alone on the machine: no server is running yet.
    print(f"offline: {len(texts)} sentences in one predict call (best of 3) ...", flush=True)
    offline, offline_cpu_ms = offline_throughput(args.model, args.backend, args.quantize, texts)
    every: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for name, server_args in modes.items():
            print(f"{name}: {args.clients} clients for {seconds:.0f} s ...", flush=True)
            run = serve_run(
                name, args.model, server_args, texts, args.clients, seconds, args.warmup, args.per_request
            )
            run["pct_of_offline"] = round(100 * run["sentences_per_s"] / offline, 1)
            every.append({"repeat": repeat, **run})
    runs = [_median_run([r for r in every if r["name"] == name]) for name in modes]

    backend = args.backend if args.quantize == "none" else f"{args.backend}_{args.quantize}"
    _print_table(
        runs,
        f"{cpu_name()}, {default_threads()} threads; {backend}; {args.clients} clients x {seconds:.0f} s,"
        f" {args.per_request} sentence(s) per request from {args.data}; offline batch: {offline:.0f} sentences/s"
        f" ({offline_cpu_ms:.2f} CPU ms per sentence)"
        + (f"; median of {args.repeats} interleaved runs" if args.repeats > 1 else ""),
    )
    result = {
        "cpu": cpu_name(),
        "threads": default_threads(),
        "clients": args.clients,
        "seconds": seconds,
        "model": str(args.model),
        "backend": backend,
        "data": str(args.data),
        "offline_sentences_per_s": round(offline, 1),
        "offline_cpu_ms_per_sentence": round(offline_cpu_ms, 3),
        "sentences_per_request": args.per_request,
        "repeats": args.repeats,
        "runs": runs,
        **({"all_runs": every} if args.repeats > 1 else {}),
    }
    write_json(result, args.out)


if __name__ == "__main__":
    main()

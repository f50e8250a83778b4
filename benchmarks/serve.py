"""The real HTTP server under concurrent single-sentence traffic, micro-batching on and off.

    python -m benchmarks.serve --model models/default [--backend onnx --quantize int8]
        [--clients 16] [--seconds 20] [--quick] [--repeats 3]

Each mode starts a fresh ``python -m inference serve`` on a free loopback port, warms it up,
then lets ``--clients`` threads (one keep-alive ``httpx.Client`` each) post one real sentence
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

``run_server`` and ``drive`` are reused by ``tests/test_load.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, Python puts benchmarks/ first on the path, where inference.py would shadow the
# `inference` package: the repository root goes first instead.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from benchmarks.inference import cpu_name

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process (``VmRSS`` in ``/proc/<pid>/status``) in MB."""
    return _proc_status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (``VmHWM``) in MB."""
    return _proc_status_kb(pid, "VmHWM") / 1024


def _proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


@dataclass
class Server:
    """A running ``python -m inference serve`` process."""

    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextmanager
def run_server(
    model: str | Path,
    args: Sequence[str] = (),
    startup_timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start the real server on a free loopback port, wait for ``/health`` 200, and always stop it.

    Its output goes to a temporary file, never a pipe nobody reads (a full pipe would block
    the server). ``args`` are extra ``serve`` options such as ``["--batch-wait-ms", "0"]``.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "inference",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
    ]
    env = (dict(os.environ) if env is None else env) | {
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with tempfile.TemporaryDirectory(prefix="claimlens-serve-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        server = Server(proc, base, log_path)
        try:
            _wait_healthy(server, startup_timeout_s)
            yield server
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def _wait_healthy(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {server.proc.returncode}:\n{server.log_tail()}")
            try:
                if client.get(f"{server.base}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the server was not healthy after {timeout_s:.0f} s:\n{server.log_tail()}")


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
    result = LoadResult(clients=clients, seconds=0.0)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = 0.0
    headers = {"content-type": "application/json"}

    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            run_client(index)
        except BaseException as err:  # reported by the caller, never lost with its thread
            failures.append(err)
            start.abort()

    def run_client(index: int) -> None:
        sent = answered = sentences = wrong = 0
        statuses: Counter[int] = Counter()
        exceptions: Counter[str] = Counter()
        latencies: list[float] = []
        source = shots(index)
        with httpx.Client(base_url=base, timeout=timeout_s, headers=headers) as http:
            start.wait(timeout=60)
            while time.monotonic() < deadline:
                shot = next(source)
                sent += 1
                t0 = time.perf_counter()
                try:
                    response = http.post(shot.path, content=shot.body)
                except httpx.HTTPError as err:
                    exceptions[type(err).__name__] += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                answered += 1
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    sentences += shot.sentences
                    if shot.expect is not None and not _expected(shot, response):
                        wrong += 1
        with lock:
            result.sent += sent
            result.answered += answered
            result.sentences += sentences
            result.wrong += wrong
            result.statuses.update(statuses)
            result.exceptions.update(exceptions)
            result.latencies_ms.extend(latencies)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    began = time.perf_counter()
    with suppress(threading.BrokenBarrierError):  # a client failed first: its error is raised below
        start.wait(timeout=60)
    for t in threads:
        t.join(seconds + timeout_s + 30)
    result.seconds = time.perf_counter() - began
    result.client_cpu_s = time.process_time() - cpu0
    if failures:
        raise RuntimeError(f"a load client failed: {failures[0]!r}") from failures[0]
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a load client did not finish")
    return result


def _expected(shot: Shot, response: httpx.Response) -> bool:
    assert shot.expect is not None
    try:
        return bool(shot.expect(response.json()))
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


def offline_throughput(model: str, backend: str, quantize: str, texts: list[str], passes: int = 3) -> float:
    """Sentences per second of ``Classifier.predict`` over all ``texts`` in one call, in-process;
    the best of ``passes`` calls, since other work on a shared machine only ever slows one down."""
    from inference.predict import Classifier

    clf = Classifier.load(model, backend=backend, quantize=quantize)
    clf.predict(texts[:16])  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        clf.predict(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


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
        rss_start = rss_mb(server.pid)
        load = drive(server.base, shots, clients, seconds)
        rss_end = rss_mb(server.pid)
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
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median sentences/s (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["sentences_per_s"])
    return {k: v for k, v in ordered[(len(ordered) - 1) // 2].items() if k != "repeat"}


def main(argv: list[str] | None = None) -> None:
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
    runtime = ["--backend", args.backend, "--quantize", args.quantize]
    if args.threads:
        runtime += ["--threads", str(args.threads)]
    batching = [] if args.batch_wait_ms is None else ["--batch-wait-ms", str(args.batch_wait_ms)]
    modes = {
        "micro_batching": [*runtime, *batching],
        "no_batching": [*runtime, "--batch-wait-ms", "0"],
    }

    # Offline first, alone on the machine: no server is running yet.
    print(f"offline: {len(texts)} sentences in one predict call (best of 3) ...", flush=True)
    offline = offline_throughput(args.model, args.backend, args.quantize, texts)
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

    threads = default_threads()
    backend = args.backend if args.quantize == "none" else f"{args.backend}_{args.quantize}"
    print(
        f"\n{cpu_name()}, {threads} threads; {backend}; {args.clients} clients x {seconds:.0f} s,"
        f" {args.per_request} sentence(s) per request from {args.data}; offline batch: {offline:.0f} sentences/s"
        + (f"; median of {args.repeats} interleaved runs" if args.repeats > 1 else "")
        + "\n"
    )
    print(
        "| mode | requests/s | sentences/s | % of offline | p50 ms | p99 ms | errors | dropped"
        " | RSS start MB | RSS end MB | client CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['name']} | {r['requests_per_s']:.0f} | {r['sentences_per_s']:.0f} | {r['pct_of_offline']:.0f}%"
            f" | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['dropped']}"
            f" | {r['rss_start_mb']:.0f} | {r['rss_end_mb']:.0f} | {r['client_cpu_s']:.1f} |"
        )
    result = {
        "cpu": cpu_name(),
        "threads": threads,
        "clients": args.clients,
        "seconds": seconds,
        "model": str(args.model),
        "backend": backend,
        "data": str(args.data),
        "offline_sentences_per_s": round(offline, 1),
        "sentences_per_request": args.per_request,
        "repeats": args.repeats,
        "runs": runs,
    }
    if args.repeats > 1:
        result["all_runs"] = every
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

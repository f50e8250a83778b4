"""The real server as a subprocess on a free loopback port: start it, wait for ``/health``, stop it.

Used by the server tests and by ``benchmarks/serve.py``; the one place that knows how.

    with run_server("models/quickstart", ["--batch-wait-ms", "0"]) as server:
        httpx.post(f"{server.base}/v1/classify", json={"sentences": ["Police said so."]})
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(
    model: str | Path, port: int, args: Sequence[str] = (), log_level: str = "warning"
) -> list[str]:
    """``python -m inference serve`` for ``model`` on ``port``, with extra ``serve`` options."""
    return [
        sys.executable,
        "-m",
        "inference",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--log-level",
        log_level,
        *args,
    ]


@dataclass
class Server:
    """A running server process; its output goes to ``log_path``."""

    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def wait_healthy(server: Server, timeout_s: float) -> None:
    """Return once ``/health`` answers 200; ``RuntimeError`` (with the log) if the server
    exits first or is not healthy within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while True:
            try:
                if client.get(f"{server.base}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            try:
                code = server.proc.wait(timeout=0.1)  # the pause between tries, cut short by an exit
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the server was not healthy after {timeout_s:.0f} s:\n{server.log_tail()}"
                    ) from None
                continue
            raise RuntimeError(f"the server exited with {code}:\n{server.log_tail()}")


@contextmanager
def start_server(
    command: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    startup_timeout_s: float = 300.0,
    pass_fds: Sequence[int] = (),
) -> Iterator[Server]:
    """Run ``command`` (a server that will listen on ``port``; ``env``: variables added to
    this process's environment; ``pass_fds``: file descriptors it inherits), wait until it
    is healthy, and always stop it.

    Its output goes to a temporary file, never a pipe nobody reads (a full pipe would
    block the server).
    """
    env = (
        os.environ
        | (env or {})
        | {
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # A server started as a file (tests/slow_server.py) still imports this checkout.
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        }
    )
    with tempfile.TemporaryDirectory(prefix="claimlens-serve-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                pass_fds=tuple(pass_fds),
            )
        server = Server(proc, f"http://127.0.0.1:{port}", log_path)
        try:
            wait_healthy(server, startup_timeout_s)
            yield server
        finally:
            server.stop()


@contextmanager
def run_server(
    model: str | Path,
    args: Sequence[str] = (),
    startup_timeout_s: float = 300.0,
    env: dict[str, str] | None = None,
    log_level: str = "warning",
) -> Iterator[Server]:
    """``claimlens serve`` on a free loopback port, healthy, stopped on exit.

    ``args`` are extra ``serve`` options such as ``["--batch-wait-ms", "0"]``; ``env`` adds
    variables (``CLAIMLENS_*`` settings, say) to this process's environment.
    """
    port = free_port()
    with start_server(serve_command(model, port, args, log_level), port, env, startup_timeout_s) as server:
        yield server


def rss_mb(pid: int) -> float:
    """Resident memory of a process (``VmRSS`` in ``/proc/<pid>/status``) in MB."""
    return _proc_status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (``VmHWM``) in MB."""
    return _proc_status_kb(pid, "VmHWM") / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")

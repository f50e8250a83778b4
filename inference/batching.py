"""Server-side micro-batching: concurrent requests share one forward pass.

Callers put their sentences on a queue and wait; one worker thread takes whatever arrived
within ``max_wait_ms`` of the first request (up to ``max_batch`` sentences), classifies it
all in one call, and hands each request its own predictions back. With ``max_batch=1``
every request is its own forward pass (micro-batching off) and still queues here, so the
queue limit holds either way. More than ``max_queue`` waiting requests raise ``QueueFull``
at once, so that the server can answer 503 rather than slow everyone down.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from inference.inputs import ContextLike
from inference.predict import Classifier, Prediction


class QueueFull(Exception):
    """The batcher's queue is full: the caller should retry later."""


class BatcherClosed(Exception):
    """The batcher has been closed (the server is shutting down)."""


@dataclass
class _Job:
    texts: list[str]
    contexts: list[ContextLike]
    future: Future[list[Prediction]] = field(default_factory=Future)
    # An async caller's own future, settled on its loop (one wake-up per batch, not per job).
    waiter: asyncio.Future[list[Prediction]] | None = None


class MicroBatcher:
    """Gather concurrent ``predict`` calls into batched forward passes.

    >>> batcher = MicroBatcher(Classifier.load("models/quickstart"), max_wait_ms=5)  # doctest: +SKIP
    >>> batcher.predict(["Police denied the report."])[0].label  # doctest: +SKIP
    'denial'
    """

    def __init__(
        self, classifier: Classifier, max_wait_ms: float = 5.0, max_batch: int = 64, max_queue: int = 256
    ) -> None:
        if max_wait_ms < 0 or max_batch < 1 or max_queue < 1:
            raise ValueError("max_wait_ms must be >= 0, max_batch and max_queue >= 1")
        self.classifier = classifier
        self.max_wait = max_wait_ms / 1000
        self.max_batch = max_batch
        self.max_queue = max_queue
        # Unbounded, so that close() never blocks on its sentinel; the limit is checked in
        # submit(), under the lock that also orders every job before the sentinel.
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def submit(
        self, texts: Sequence[str], contexts: Sequence[ContextLike] | None = None
    ) -> Future[list[Prediction]]:
        """Queue ``texts`` and return at once: a future of their predictions.

        Raises ``QueueFull`` when ``max_queue`` requests already wait, ``BatcherClosed``
        once ``close()`` has begun: a job is either queued before the worker's stop
        signal, and so answered, or refused, never left waiting.
        """
        return self._enqueue(texts, contexts).future

    def _enqueue(
        self,
        texts: Sequence[str],
        contexts: Sequence[ContextLike] | None,
        waiter: asyncio.Future[list[Prediction]] | None = None,
    ) -> _Job:
        job = _Job(
            list(texts), list(contexts) if contexts is not None else [None] * len(texts), waiter=waiter
        )
        if len(job.contexts) != len(job.texts):
            raise ValueError(f"got {len(job.contexts)} contexts for {len(job.texts)} texts")
        with self._lock:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if self._queue.qsize() >= self.max_queue:
                raise QueueFull(f"{self.max_queue} requests are already waiting")
            self._queue.put(job)
        return job

    def predict(
        self, texts: Sequence[str], contexts: Sequence[ContextLike] | None = None, timeout: float | None = None
    ) -> list[Prediction]:
        """Classify ``texts`` together with whatever other requests arrive meanwhile."""
        return self.submit(texts, contexts).result(timeout)

    async def predict_async(
        self, texts: Sequence[str], contexts: Sequence[ContextLike] | None = None, timeout: float | None = None
    ) -> list[Prediction]:
        """``predict`` for an event loop: waits without a thread; ``TimeoutError`` after
        ``timeout`` seconds, and a request that timed out before its batch began is dropped."""
        waiter: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        job = self._enqueue(texts, contexts, waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except BaseException:  # timed out or cancelled: the worker skips it if it has not begun
            job.future.cancel()
            raise

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests, answer the queued ones, then stop the worker."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._worker.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                first, idle = self._queue.get_nowait(), False
            except queue.Empty:
                first, idle = self._queue.get(), True
            if first is None:
                return
            jobs, stop = self._gather(first, self.max_wait if idle else 0.0)
            self._serve(jobs)
            if stop:
                return

    def _gather(self, first: _Job, wait: float) -> tuple[list[_Job], bool]:
        """``first``, what already waits behind it, and what arrives within ``wait`` seconds;
        True once the stop signal came.

        Only an idle worker waits: requests that queued while the last batch ran have waited
        long enough, and under load that wait would idle the model once per batch.
        """
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + wait
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += len(job.texts)
        return jobs, False

    def _serve(self, jobs: list[_Job]) -> None:
        # A caller that gave up (its future was cancelled, e.g. on a timeout) is dropped here;
        # the others' futures become "running", so they can no longer be cancelled under us.
        self._answer([job for job in jobs if job.future.set_running_or_notify_cancel()])

    def _answer(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        texts = [t for job in jobs for t in job.texts]
        contexts = [c for job in jobs for c in job.contexts]
        try:
            predictions = self.classifier.predict(texts, contexts)
        except BaseException as err:
            if len(jobs) > 1 and isinstance(err, Exception):
                # One bad input must not fail its neighbours: each job again, alone.
                for job in jobs:
                    self._answer([job])
            else:
                for job in jobs:
                    job.future.set_exception(err)
                _wake(jobs)
            return
        start = 0
        for job in jobs:
            job.future.set_result(predictions[start : start + len(job.texts)])
            start += len(job.texts)
        _wake(jobs)


def _wake(jobs: list[_Job]) -> None:
    """Settle the async callers' futures: one call into each event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        if job.waiter is not None:
            by_loop.setdefault(job.waiter.get_loop(), []).append(job)
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, waiting)


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        assert job.waiter is not None
        if job.waiter.done():  # its caller gave up
            continue
        error = job.future.exception()
        if error is None:
            job.waiter.set_result(job.future.result())
        else:
            job.waiter.set_exception(error)

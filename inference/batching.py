"""Server-side micro-batching: concurrent requests share one forward pass.

Request threads put their sentences on a bounded queue and wait; one worker thread takes
whatever arrived within ``max_wait_ms`` of the first request (up to ``max_batch`` sentences),
classifies it all in one call, and hands each request its own predictions back. A full queue
raises ``QueueFull`` at once, so that the server can answer 503 rather than slow everyone down.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from inference.predict import Classifier, Prediction


class QueueFull(Exception):
    """The batcher's queue is full: the caller should retry later."""


class BatcherClosed(Exception):
    """The batcher has been closed (the server is shutting down)."""


@dataclass
class _Job:
    texts: list[str]
    contexts: list[str | None]
    future: Future[list[Prediction]] = field(default_factory=Future)


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
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def submit(
        self, texts: Sequence[str], contexts: Sequence[str | None] | None = None
    ) -> Future[list[Prediction]]:
        """Queue ``texts`` and return at once: a future of their predictions (for async callers)."""
        if self._closed:
            raise BatcherClosed("the server is shutting down")
        job = _Job(list(texts), list(contexts) if contexts is not None else [None] * len(texts))
        if len(job.contexts) != len(job.texts):
            raise ValueError(f"got {len(job.contexts)} contexts for {len(job.texts)} texts")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests are already waiting") from None
        return job.future

    def predict(
        self, texts: Sequence[str], contexts: Sequence[str | None] | None = None, timeout: float | None = None
    ) -> list[Prediction]:
        """Classify ``texts`` together with whatever other requests arrive meanwhile."""
        return self.submit(texts, contexts).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued requests, then stop the worker."""
        self._closed = True
        self._queue.put(None)
        self._worker.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, size = [first], len(first.texts)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while size < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                size += len(job.texts)
            self._serve(jobs)
            if stop:
                return

    def _serve(self, jobs: list[_Job]) -> None:
        # A caller that gave up (its future was cancelled, e.g. on a timeout) is dropped here;
        # the others' futures become "running", so they can no longer be cancelled under us.
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        texts = [t for job in jobs for t in job.texts]
        contexts = [c for job in jobs for c in job.contexts]
        try:
            predictions = self.classifier.predict(texts, contexts)
        except BaseException as err:  # every waiting request learns of the failure
            for job in jobs:
                job.future.set_exception(err)
            return
        start = 0
        for job in jobs:
            job.future.set_result(predictions[start : start + len(job.texts)])
            start += len(job.texts)

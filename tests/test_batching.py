"""Micro-batching: concurrent calls share forward passes, keep their own order, fail together."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference.batching import BatcherClosed, MicroBatcher, QueueFull
from inference.predict import Classifier


class Counting(Classifier):
    """The real classifier, counting its forward calls (and optionally held at a gate)."""

    def __init__(self, clf: Classifier, gate: threading.Event | None = None) -> None:
        super().__init__(clf.backend, clf.tokenizer, clf.info)
        self.calls: list[int] = []
        self.gate = gate
        self.entered = threading.Event()

    def predict(self, texts, contexts=None):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append(len(texts))
        return super().predict(texts, contexts)


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    return Classifier.load(tiny_model_dir)


def test_concurrent_requests_share_batches_and_get_their_own_answers(clf):
    counting = Counting(clf)
    batcher = MicroBatcher(counting, max_wait_ms=50, max_batch=64)
    requests = [[f"Police said {i} men were held.", f"Rebels denied claim {i}."] for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(batcher.predict, requests))
    batcher.close()
    for texts, got in zip(requests, answers, strict=True):
        assert [p.scores for p in got] == [p.scores for p in clf.predict(texts)]
    assert sum(counting.calls) == 32
    assert len(counting.calls) < 16  # requests were gathered, not run one by one


def test_a_full_queue_is_refused_at_once(clf):
    gate = threading.Event()
    held = Counting(clf, gate)
    batcher = MicroBatcher(held, max_wait_ms=0, max_queue=1)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.predict, ["held by the gate"])
        assert held.entered.wait(30)  # the worker has taken it and is blocked in the model
        second = pool.submit(batcher.predict, ["waits in the queue"])
        while batcher._queue.qsize() < 1:
            threading.Event().wait(0.01)
        with pytest.raises(QueueFull):
            batcher.predict(["one too many"])
        gate.set()
        assert first.result(30)[0].label and second.result(30)[0].label
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.predict(["after close"])


def test_a_failure_reaches_every_waiting_request(clf):
    class Broken(Counting):
        def predict(self, texts, contexts=None):
            raise RuntimeError("backend crashed")

    batcher = MicroBatcher(Broken(clf), max_wait_ms=20)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.predict, ["x"]) for _ in range(4)]
        for f in futures:
            with pytest.raises(RuntimeError, match="backend crashed"):
                f.result(30)
    batcher.close()


def test_bad_settings_are_refused(clf):
    with pytest.raises(ValueError):
        MicroBatcher(clf, max_queue=0)


def test_a_caller_that_gave_up_does_not_break_the_worker(clf):
    gate = threading.Event()
    held = Counting(clf, gate)
    batcher = MicroBatcher(held, max_wait_ms=0)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.predict, ["held by the gate"])
        assert held.entered.wait(30)
        abandoned = batcher.submit(["its caller timed out"])
        assert abandoned.cancel()  # what asyncio.wait_for does to a request that waited too long
        gate.set()
        assert first.result(30)[0].label
    assert batcher.predict(["still served"], timeout=30)[0].label  # the worker is alive
    assert held.calls == [1, 1]  # the abandoned request never reached the model
    batcher.close()

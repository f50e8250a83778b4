"""Micro-batching: concurrent calls share forward passes and keep their own answers; a bad
input fails only its own request; close() answers what was queued and refuses the rest."""

import queue
import threading
from collections.abc import Sequence
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
            assert self.gate.wait(30), "the test never opened the gate"
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


@pytest.mark.parametrize(("max_wait_ms", "max_batch"), [(0, 1), (5, 64)])
def test_a_full_queue_is_refused_at_once(clf, max_wait_ms, max_batch):
    gate = threading.Event()
    held = Counting(clf, gate)
    batcher = MicroBatcher(held, max_wait_ms=max_wait_ms, max_batch=max_batch, max_queue=1)
    first = batcher.submit(["held by the gate"])
    assert held.entered.wait(30)  # the worker has taken it and is blocked in the model
    second = batcher.submit(["waits in the queue"])  # queued once submit returns
    with pytest.raises(QueueFull):
        batcher.submit(["one too many"])
    gate.set()
    assert first.result(30)[0].label and second.result(30)[0].label
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.predict(["after close"])


def test_one_bad_input_fails_only_its_own_request(clf):
    class RefusesPoison(Counting):
        def predict(self, texts, contexts=None):
            result = super().predict(texts, contexts)
            if "poison" in texts:
                raise ValueError("cannot read 'poison'")
            return result

    gate = threading.Event()
    model = RefusesPoison(clf, gate)
    batcher = MicroBatcher(model, max_wait_ms=0, max_batch=64)
    first = batcher.submit(["held by the gate"])
    assert model.entered.wait(30)
    # Queued behind the held call, so the worker takes all three as one batch.
    good, bad, other = (batcher.submit([t]) for t in ("Police said so.", "poison", "He denied it."))
    gate.set()
    assert first.result(30)[0].label
    assert [p.scores for p in good.result(30)] == [p.scores for p in clf.predict(["Police said so."])]
    assert [p.scores for p in other.result(30)] == [p.scores for p in clf.predict(["He denied it."])]
    with pytest.raises(ValueError, match="poison"):
        bad.result(30)
    assert model.calls == [1, 3, 1, 1, 1]  # the batch of three failed, then each ran alone
    batcher.close()


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
    first = batcher.submit(["held by the gate"])
    assert held.entered.wait(30)
    abandoned = batcher.submit(["its caller timed out"])
    assert abandoned.cancel()  # what asyncio.wait_for does to a request that waited too long
    gate.set()
    assert first.result(30)[0].label
    assert batcher.predict(["still served"], timeout=30)[0].label  # the worker is alive
    assert held.calls == [1, 1]  # the abandoned request never reached the model
    batcher.close()


def test_close_answers_what_was_queued(clf):
    gate = threading.Event()
    held = Counting(clf, gate)
    batcher = MicroBatcher(held, max_wait_ms=0, max_batch=1)
    first = batcher.submit(["held by the gate"])
    assert held.entered.wait(30)
    queued = batcher.submit(["queued before close"])
    closer = threading.Thread(target=batcher.close, args=(30,))
    closer.start()  # close() waits for the worker, which is held at the gate
    gate.set()
    closer.join(30)
    assert not closer.is_alive()
    assert first.result(0)[0].label and queued.result(0)[0].label


class PausedTexts(Sequence[str]):
    """Sentences whose reading pauses until ``resume`` is set; ``reading`` says it began.

    ``submit`` reads them while it builds its job: this holds a submit in the middle of its
    work, where a close() used to slip in between its "closed?" check and its enqueue.
    """

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.reading = threading.Event()
        self.resume = threading.Event()

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i]

    def __iter__(self):
        self.reading.set()
        assert self.resume.wait(30), "the test never resumed the submit"
        return iter(self.texts)


def test_a_submit_racing_close_is_refused_not_left_waiting(clf):
    batcher = MicroBatcher(clf, max_wait_ms=0)
    texts = PausedTexts(["submitted while the server shuts down"])
    outcome: queue.Queue[object] = queue.Queue()

    def submit() -> None:
        try:
            outcome.put(batcher.submit(texts))
        except BatcherClosed as err:
            outcome.put(err)

    thread = threading.Thread(target=submit)
    thread.start()
    assert texts.reading.wait(30)  # the submit is under way ...
    batcher.close(timeout=30)  # ... when close() runs to its end
    texts.resume.set()
    got = outcome.get(timeout=30)
    thread.join(30)
    # Before the fix this was a future queued behind the worker's stop signal: never answered.
    assert isinstance(got, BatcherClosed), f"got {got!r}; a future nobody will answer"

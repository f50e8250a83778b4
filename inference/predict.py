"""Classifying sentences and whole articles with a trained model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from inference.backends import Backend, OnnxBackend, TorchBackend, check_choice, onnx_path
from inference.inputs import Encoded, InputBuilder, previous_sentences
from inference.labels import LABELS
from inference.model import ModelInfo, load_model_dir, load_tokenizer_and_info
from inference.sentences import Sentence, split_sentences


@dataclass(frozen=True)
class Prediction:
    """One sentence's label, its probability, and the probability of every label.

    ``truncated`` is true when the sentence had more tokens than the model reads
    (``max_length``), so that only its beginning was classified.
    """

    label: str
    score: float
    scores: dict[str, float]
    truncated: bool = False


@dataclass(frozen=True)
class SentencePrediction:
    """A sentence of an article with its offsets and its prediction."""

    sentence: str
    start: int
    end: int
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool = False


def _check_texts(texts: object, name: str = "texts") -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"{name} must be a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{name}[{i}] is empty")
    return list(texts)


class Classifier:
    """A loaded model; reusable, and safe to call from several threads.

    ``backend`` runs the forward pass: a ``PreTrainedModel`` (run by PyTorch) or any
    ``inference.backends.Backend``, such as an ONNX Runtime session.

    >>> clf = Classifier.load("models/quickstart", backend="onnx", quantize="int8")  # doctest: +SKIP
    >>> clf.predict(["Police denied the report."])[0].label  # doctest: +SKIP
    'denial'
    """

    def __init__(
        self,
        backend: PreTrainedModel | Backend,
        tokenizer: PreTrainedTokenizerBase,
        info: ModelInfo,
        batch_size: int = 64,
    ) -> None:
        self.backend: Backend = TorchBackend(backend) if isinstance(backend, PreTrainedModel) else backend
        self.tokenizer = tokenizer
        self.info = info
        self.batch_size = batch_size
        self.inputs = InputBuilder(tokenizer, info.max_length, info.context)
        # Fast tokenizers are not re-entrant; one lock keeps concurrent callers correct.
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path,
        batch_size: int = 64,
        backend: str = "torch",
        quantize: str = "none",
        threads: int | None = None,
    ) -> Classifier:
        """Load a model directory; ``backend="onnx"`` uses its exported ``model[.int8].onnx``."""
        check_choice(backend, quantize)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if threads:
            torch.set_num_threads(threads)
        if backend == "torch":
            model, tokenizer, info = load_model_dir(path)
            return cls(model, tokenizer, info, batch_size=batch_size)
        tokenizer, info = load_tokenizer_and_info(path)
        onnx = OnnxBackend(onnx_path(Path(path), quantize), threads)
        return cls(onnx, tokenizer, info, batch_size=batch_size)

    def predict(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None) -> list[Prediction]:
        """Label each text; ``contexts[i]`` is the sentence before ``texts[i]``, if any.

        Results keep the input order; batches are formed from inputs of similar length.
        A model trained without context ignores ``contexts``.

        >>> clf.predict(["He denied it."], ["Rebels said they took the town."])[0].label  # doctest: +SKIP
        'denial'
        """
        texts = _check_texts(texts)
        contexts = _check_contexts(contexts, len(texts))
        results: list[Prediction | None] = [None] * len(texts)
        with self._lock:
            encoded = self.inputs(texts, contexts)
            for batch in self._batches([len(e.input_ids) for e in encoded]):
                probs = self._forward([encoded[i] for i in batch])
                for i, row in zip(batch, probs.tolist(), strict=True):
                    results[i] = self._prediction(row, encoded[i].truncated)
        return [r for r in results if r is not None]

    def _prediction(self, row: list[float], truncated: bool) -> Prediction:
        # The folder's own label order says which output is which; scores follow LABELS.
        by_label = dict(zip(self.info.labels, row, strict=True))
        best = max(LABELS, key=by_label.__getitem__)
        scores = {label: round(by_label[label], 6) for label in LABELS}
        return Prediction(best, scores[best], scores, truncated)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices by length (tokens), cut into batches of at most ``batch_size`` whose inputs
        are of similar length: a batch is padded to its longest input, and padding is wasted work."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and len(batches[-1]) < self.batch_size
                and lengths[i] <= 1.3 * lengths[batches[-1][0]] + 4
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def _forward(self, encoded: list[Encoded]) -> np.ndarray:
        arrays = self.inputs.batch(encoded)
        return _softmax(self.backend({n: arrays[n] for n in self.backend.input_names}))

    def analyze(self, text: str) -> list[SentencePrediction]:
        """Split an article into sentences and label each, the previous one as context."""
        sentences = split_article(text)
        contexts = previous_sentences([s.text for s in sentences])
        predictions = self.predict([s.text for s in sentences], contexts)
        return [
            SentencePrediction(s.text, s.start, s.end, p.label, p.score, p.scores, p.truncated)
            for s, p in zip(sentences, predictions, strict=True)
        ]


def _check_contexts(contexts: object, n: int) -> list[str | None]:
    if contexts is None:
        return [None] * n
    if isinstance(contexts, str) or not isinstance(contexts, Sequence):
        raise ValueError(f"contexts must be a list of strings or None, got {type(contexts).__name__}")
    if len(contexts) != n:
        raise ValueError(f"got {len(contexts)} contexts for {n} texts")
    for i, context in enumerate(contexts):
        if context is not None and not isinstance(context, str):
            raise ValueError(f"contexts[{i}] must be a string or None, got {type(context).__name__}")
    return [c or None for c in contexts]


def split_article(text: str) -> list[Sentence]:
    """The sentences of an article; ``ValueError`` when it is not a string or has none."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty")
    sentences = split_sentences(text)
    if not sentences:
        raise ValueError("text has no sentences")
    return sentences


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=4)
def _cached(path: str) -> Classifier:
    return Classifier.load(path)


def _classifier(model: str | Path | Classifier) -> Classifier:
    if isinstance(model, Classifier):
        return model
    return _cached(str(Path(model).resolve()))


def predict(
    texts: Sequence[str],
    model: str | Path | Classifier,
    contexts: Sequence[str | None] | None = None,
) -> list[Prediction]:
    """Label sentences with a model directory (loaded once, then cached) or a ``Classifier``.

    ``contexts[i]`` is the sentence before ``texts[i]`` (None for a document's first), read by
    a context model; :func:`inference.inputs.previous_sentences` builds them from doc ids.

    >>> predict(["Police said three men were arrested."], model="models/quickstart")[0].label  # doctest: +SKIP
    'official_statement'
    """
    return _classifier(model).predict(texts, contexts)


def analyze(text: str, model: str | Path | Classifier) -> list[SentencePrediction]:
    """Split an article into sentences and label each (see :meth:`Classifier.analyze`)."""
    return _classifier(model).analyze(text)

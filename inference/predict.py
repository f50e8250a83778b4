"""Classifying sentences and whole articles with a trained model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from inference.backends import Backend, OnnxBackend, TorchBackend, check_choice, onnx_path
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

        Results keep the input order; batches are formed from texts of similar length.
        """
        texts = _check_texts(texts)
        if contexts is None or not self.info.context:
            contexts = [None] * len(texts)
        elif len(contexts) != len(texts):
            raise ValueError(f"got {len(contexts)} contexts for {len(texts)} texts")
        results: list[Prediction | None] = [None] * len(texts)
        with self._lock:
            # A pair is padded to its sentence and its context together: sort by both.
            lengths = [len(t) + len(c or "") for t, c in zip(texts, contexts, strict=True)]
            for batch in self._batches(lengths):
                probs, truncated = self._forward([texts[i] for i in batch], [contexts[i] for i in batch])
                for i, row, cut in zip(batch, probs.tolist(), truncated, strict=True):
                    best = max(range(len(LABELS)), key=row.__getitem__)
                    scores = {label: round(p, 6) for label, p in zip(LABELS, row, strict=True)}
                    results[i] = Prediction(LABELS[best], round(row[best], 6), scores, cut)
        return [r for r in results if r is not None]

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices by length (characters), cut into batches of at most ``batch_size`` whose inputs
        are of similar length: a batch is padded to its longest input, and padding is wasted work."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and len(batches[-1]) < self.batch_size
                and lengths[i] <= 1.3 * lengths[batches[-1][0]] + 8
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def _forward(self, texts: list[str], contexts: list[str | None]) -> tuple[np.ndarray, list[bool]]:
        if self.info.context:
            # As in training: always a pair, the sentence first so that truncation trims
            # the context first, and an empty context for a document's first sentence.
            encoded = self.tokenizer(
                texts,
                [c or "" for c in contexts],
                truncation="longest_first",
                max_length=self.info.max_length,
                padding=True,
                return_tensors="np",
            )
        else:
            encoded = self.tokenizer(
                texts, truncation=True, max_length=self.info.max_length, padding=True, return_tensors="np"
            )
        if "token_type_ids" in self.backend.input_names and "token_type_ids" not in encoded:
            encoded["token_type_ids"] = np.zeros_like(encoded["input_ids"])
        logits = self.backend(encoded)
        return _softmax(logits), self._truncated(texts, encoded)

    def _truncated(self, texts: list[str], encoded: BatchEncoding) -> list[bool]:
        # A sentence was cut when fewer of its own tokens (sequence 0) reached the model
        # than it has; special tokens and the context do not count.
        full = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        kept = [sum(1 for s in encoded.sequence_ids(i) if s == 0) for i in range(len(texts))]
        return [k < len(f) for k, f in zip(kept, full, strict=True)]

    def analyze(self, text: str) -> list[SentencePrediction]:
        """Split an article into sentences and label each, the previous one as context."""
        sentences = split_article(text)
        contexts = [None, *(s.text for s in sentences[:-1])]
        predictions = self.predict([s.text for s in sentences], contexts)
        return [
            SentencePrediction(s.text, s.start, s.end, p.label, p.score, p.scores, p.truncated)
            for s, p in zip(sentences, predictions, strict=True)
        ]


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


def predict(texts: Sequence[str], model: str | Path | Classifier) -> list[Prediction]:
    """Label sentences with a model directory (loaded once, then cached) or a ``Classifier``.

    >>> predict(["Police said three men were arrested."], model="models/quickstart")[0].label  # doctest: +SKIP
    'official_statement'
    """
    return _classifier(model).predict(texts)


def analyze(text: str, model: str | Path | Classifier) -> list[SentencePrediction]:
    """Split an article into sentences and label each (see :meth:`Classifier.analyze`)."""
    return _classifier(model).analyze(text)

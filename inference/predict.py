"""Classifying sentences and whole articles with a trained model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from inference.labels import LABELS
from inference.model import ModelInfo, load_model_dir
from inference.sentences import split_sentences


@dataclass(frozen=True)
class Prediction:
    """One sentence's label, its probability, and the probability of every label."""

    label: str
    score: float
    scores: dict[str, float]


@dataclass(frozen=True)
class SentencePrediction:
    """A sentence of an article with its offsets and its prediction."""

    sentence: str
    start: int
    end: int
    label: str
    score: float
    scores: dict[str, float]


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

    >>> clf = Classifier.load("models/quickstart")  # doctest: +SKIP
    >>> clf.predict(["Police denied the report."])[0].label  # doctest: +SKIP
    'denial'
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        info: ModelInfo,
        batch_size: int = 64,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.info = info
        self.batch_size = batch_size
        # Fast tokenizers are not re-entrant; one lock keeps concurrent callers correct.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 64) -> Classifier:
        model, tokenizer, info = load_model_dir(path)
        return cls(model, tokenizer, info, batch_size=batch_size)

    def predict(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None) -> list[Prediction]:
        """Label each text; ``contexts[i]`` is the sentence before ``texts[i]``, if any.

        Results keep the input order; batches are formed from texts of similar length.
        """
        texts = _check_texts(texts)
        if contexts is None or not self.info.context:
            contexts = [None] * len(texts)
        elif len(contexts) != len(texts):
            raise ValueError(f"got {len(contexts)} contexts for {len(texts)} texts")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Prediction | None] = [None] * len(texts)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                probs = self._forward([texts[i] for i in batch], [contexts[i] for i in batch])
                for i, row in zip(batch, probs.tolist(), strict=True):
                    best = max(range(len(LABELS)), key=row.__getitem__)
                    scores = {label: round(p, 6) for label, p in zip(LABELS, row, strict=True)}
                    results[i] = Prediction(LABELS[best], round(row[best], 6), scores)
        return [r for r in results if r is not None]

    def _forward(self, texts: list[str], contexts: list[str | None]) -> torch.Tensor:
        if self.info.context:
            # As in training: always a pair, the sentence first so that truncation trims
            # the context first, and an empty context for a document's first sentence.
            encoded = self.tokenizer(
                texts,
                [c or "" for c in contexts],
                truncation="longest_first",
                max_length=self.info.max_length,
                padding=True,
                return_tensors="pt",
            )
        else:
            encoded = self.tokenizer(
                texts,
                truncation=True,
                max_length=self.info.max_length,
                padding=True,
                return_tensors="pt",
            )
        logits = self.model(**encoded).logits
        return torch.softmax(logits.float(), dim=-1)

    def analyze(self, text: str) -> list[SentencePrediction]:
        """Split an article into sentences and label each, the previous one as context."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("text is empty")
        sentences = split_sentences(text)
        contexts = [None, *(s.text for s in sentences[:-1])]
        predictions = self.predict([s.text for s in sentences], contexts)
        return [
            SentencePrediction(s.text, s.start, s.end, p.label, p.score, p.scores)
            for s, p in zip(sentences, predictions, strict=True)
        ]


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

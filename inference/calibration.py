"""Calibrated confidence: temperature-scaled softmax, and how far confidence is from accuracy.

A model folder may carry a temperature ``T`` (``config.json``: ``claimlens.temperature``, fitted
on dev by ``training.calibration``); the scores users see are ``softmax(logits / T)``. Dividing
every logit by one positive number never changes which label is largest, only how sure the
scores say the model is. Expected calibration error (ECE) measures that sureness against
accuracy: the top-label confidence is binned into 15 equal-width bins, and ECE is the
example-weighted mean gap between each bin's mean confidence and its accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.labels import LABELS

BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``, computed stably.

    >>> softmax(np.array([[2.0, 0.0]]), temperature=2.0).round(3).tolist()
    [[0.731, 0.269]]
    """
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def gold_indices(labels: Sequence[str], order: Sequence[str] = LABELS) -> np.ndarray:
    """Each gold label's column in ``order`` (default: ``LABELS``); ``ValueError`` on an unknown one."""
    position = {label: i for i, label in enumerate(order)}
    unknown = sorted({label for label in labels if label not in position})
    if unknown:
        raise ValueError(f"unknown labels {unknown}; expected one of {list(order)}")
    return np.array([position[label] for label in labels], dtype=np.int64)


def nll(logits: np.ndarray, gold: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold columns under ``softmax(logits / temperature)``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(scaled - top).sum(axis=-1)) + top[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(gold)), gold]))


@dataclass(frozen=True)
class Bin:
    """One confidence bin ``(low, high]``: how many examples, their mean confidence and accuracy."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def reliability(probs: np.ndarray, gold: np.ndarray, bins: int = BINS) -> list[Bin]:
    """Top-label confidence against accuracy in ``bins`` equal-width bins (empty ones included)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(gold) or not len(gold):
        raise ValueError(f"need one row of scores per gold label, got {probs.shape} for {len(gold)}")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(gold)
    # Bins are (low, high]: a confidence of exactly 1/bins falls in the first.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    result = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        result.append(
            Bin(
                low=b / bins,
                high=(b + 1) / bins,
                count=n,
                confidence=float(confidence[inside].mean()) if n else 0.0,
                accuracy=float(correct[inside].mean()) if n else 0.0,
            )
        )
    return result


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = BINS) -> float:
    """Top-label ECE over ``bins`` equal-width bins: 0 is perfectly calibrated.

    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4
    """
    table = reliability(probs, gold, bins)
    n = sum(b.count for b in table)
    return round(sum(b.count * abs(b.accuracy - b.confidence) for b in table) / n, 10)

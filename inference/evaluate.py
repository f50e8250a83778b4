"""Classification metrics and their table, shared by training and ``claimlens evaluate``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from inference.calibration import BINS, expected_calibration_error, gold_indices, reliability
from inference.labels import LABELS

if TYPE_CHECKING:
    from inference.predict import Classifier
    from inference.records import Example


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    >>> compute_metrics(["claim", "other"], ["claim", "claim"])["accuracy"]
    0.5
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no examples to evaluate")
    labels = list(LABELS)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(sum(f1) / len(labels)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n": len(y_true),
    }


def evaluate_examples(
    classifier: Classifier, examples: Sequence[Example], progress: bool | None = False
) -> dict[str, Any]:
    """:func:`compute_metrics` of a classifier on labelled examples, plus the calibration of its scores.

    ``calibration`` holds the model's temperature, the ECE of the scores as served (15 bins) and
    the reliability bins; ``progress`` as in :meth:`Classifier.predict`.

    >>> evaluate_examples(Classifier.load("models/quickstart"), examples)["calibration"]["ece"]  # doctest: +SKIP
    0.031
    """
    gold = [e.label for e in examples]
    predictions = classifier.predict(
        [e.text for e in examples], [e.context for e in examples], progress=progress
    )
    metrics = compute_metrics(gold, [p.label for p in predictions])
    probs = np.array([[p.scores[label] for label in LABELS] for p in predictions])
    metrics["calibration"] = {
        "temperature": classifier.temperature,
        "bins": BINS,
        "ece": round(expected_calibration_error(probs, gold_indices(gold)), 6),
        "reliability": [vars(b) for b in reliability(probs, gold_indices(gold))],
    }
    return metrics


def flat_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """Scalar metrics named ``prefix_accuracy``, ``prefix_f1_denial``, … for trackers."""
    flat = {f"{prefix}_accuracy": metrics["accuracy"], f"{prefix}_macro_f1": metrics["macro_f1"]}
    for label, row in metrics["per_class"].items():
        flat[f"{prefix}_f1_{label}"] = row["f1"]
    return flat


def format_report(metrics: dict[str, Any]) -> str:
    """A plain-text table of the metrics, for people."""
    width = max(len(label) for label in LABELS) + 2
    lines = [
        f"n={metrics['n']}  accuracy={metrics['accuracy']:.4f}  macro-F1={metrics['macro_f1']:.4f}",
    ]
    if "calibration" in metrics:
        c = metrics["calibration"]
        lines.append(f"ECE ({c['bins']} bins) {c['ece']:.4f} with temperature {c['temperature']:.4g}")
    lines += [
        "",
        f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for label, row in metrics["per_class"].items():
        lines.append(
            f"{label:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}"
            f"{row['f1']:>10.4f}{row['support']:>10d}"
        )
    lines += ["", "confusion matrix (rows: gold, columns: predicted)"]
    short = [label[:9] for label in LABELS]
    lines.append(" " * width + "".join(f"{s:>11}" for s in short))
    for label, row in zip(LABELS, metrics["confusion_matrix"], strict=True):
        lines.append(f"{label:<{width}}" + "".join(f"{v:>11d}" for v in row))
    return "\n".join(lines)

"""Human-readable reports of a training run: the confusion matrix as a PNG and a text report."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from inference.evaluate import format_report
from inference.labels import LABELS
from training.tracking import Tracker


def confusion_png(matrix: list[list[int]], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=30, ha="right")
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_reports(metrics: dict[str, Any], tracker: Tracker) -> None:
    """Log the classification report and confusion matrix of dev (best epoch) and test."""
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("dev", "test"):
            result = metrics.get(split)
            if not result:
                continue
            tracker.log_text(format_report(result), f"reports/{split}_classification_report.txt")
            png = confusion_png(
                result["confusion_matrix"],
                f"{split} confusion matrix",
                Path(tmp) / f"{split}_confusion_matrix.png",
            )
            tracker.log_file(png, "reports")
        tracker.log_text(json.dumps(metrics, indent=2), "reports/metrics.json")

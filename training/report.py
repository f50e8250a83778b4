"""Human-readable reports of a training run: the confusion matrix as a PNG and a text report."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from inference.evaluate import format_report
from inference.plots import confusion_heatmap
from training.tracking import Tracker


def write_reports(metrics: dict[str, Any], tracker: Tracker) -> None:
    """Log the classification report and confusion matrix of dev (best epoch) and test."""
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("dev", "test"):
            result = metrics.get(split)
            if not result:
                continue
            tracker.log_text(format_report(result), f"reports/{split}_classification_report.txt")
            png = confusion_heatmap(
                result["confusion_matrix"],
                f"{split} confusion matrix",
                Path(tmp) / f"{split}_confusion_matrix.png",
            )
            tracker.log_file(png, "reports")
        tracker.log_text(json.dumps(metrics, indent=2), "reports/metrics.json")

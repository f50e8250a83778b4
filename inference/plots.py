"""The PNG figures of an evaluation: confusion heatmap, per-class F1 bars, reliability diagram.

Drawn with matplotlib's Agg backend (no display needed), imported only when a figure is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.calibration import Bin
from inference.labels import LABELS


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_heatmap(matrix: Sequence[Sequence[int]], title: str, path: Path) -> Path:
    """The confusion matrix (rows gold, columns predicted, ``LABELS`` order) as a heatmap PNG.

    >>> confusion_heatmap([[1, 0, 0, 0]] * 4, "test", Path("cm.png"))  # doctest: +SKIP
    PosixPath('cm.png')
    """
    plt = _pyplot()
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


def f1_bars(per_class: dict[str, dict[str, float]], title: str, path: Path) -> Path:
    """Precision, recall and F1 of each label as grouped bars (PNG)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    for k, metric in enumerate(("precision", "recall", "f1")):
        values = [per_class[label][metric] for label in LABELS]
        bars = ax.bar([i + (k - 1) * width for i in range(len(LABELS))], values, width, label=metric)
        if metric == "f1":
            ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_ylim(0, 1.2)  # headroom for the legend above the bars
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def reliability_diagram(curves: dict[str, list[Bin]], title: str, path: Path) -> Path:
    """Accuracy against confidence per bin, one curve per entry of ``curves`` (e.g. before/after).

    The diagonal is perfect calibration; a curve below it is over-confident.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    for name, bins in curves.items():
        used = [b for b in bins if b.count]
        ax.plot([b.confidence for b in used], [b.accuracy for b in used], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-label score)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

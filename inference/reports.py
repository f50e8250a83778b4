"""Evaluation reports for people: Markdown or HTML with tables and figures, optionally in MLflow.

``write_report`` writes ``report.md`` with its PNGs beside it (``report_confusion_matrix.png``,
``report_per_class_f1.png``, ``report_reliability.png``), or a self-contained ``report.html``
with the same figures embedded; ``log_report`` puts the files and the metrics in an MLflow run.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.calibration import Bin
from inference.labels import LABELS
from inference.plots import confusion_heatmap, f1_bars, reliability_diagram

EXPERIMENT = "claimlens-eval"
FORMATS = {".md": "markdown", ".html": "html"}
FIGURES = ("confusion_matrix", "per_class_f1", "reliability")


@dataclass(frozen=True)
class ReportContext:
    """What was evaluated: the model (name, folder, backend) and the data files."""

    model_name: str
    model_path: str
    backend: str
    data: tuple[str, ...]


def _figures(metrics: dict[str, Any], stem: Path) -> dict[str, Path]:
    """Draw the report's PNGs as ``<stem>_<figure>.png``."""
    paths = {name: stem.with_name(f"{stem.name}_{name}.png") for name in FIGURES}
    confusion_heatmap(metrics["confusion_matrix"], "confusion matrix", paths["confusion_matrix"])
    f1_bars(metrics["per_class"], "per-class precision, recall, F1", paths["per_class_f1"])
    calibration = metrics.get("calibration")
    if calibration:
        bins = [Bin(**b) for b in calibration["reliability"]]
        label = f"T={calibration['temperature']:.3g} (ECE {calibration['ece']:.3f})"
        reliability_diagram({label: bins}, "reliability", paths["reliability"])
    else:
        del paths["reliability"]
    return paths


def _rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The per-class table and the confusion table, as header and rows of text."""
    head = ["label", "precision", "recall", "F1", "support"]
    per_class = [
        [label, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"])]
        for label, r in metrics["per_class"].items()
    ]
    matrix_head = ["gold \\ predicted", *LABELS]
    matrix = [[label, *map(str, row)] for label, row in zip(LABELS, metrics["confusion_matrix"], strict=True)]
    return head, per_class, matrix_head, matrix


def _summary(metrics: dict[str, Any], context: ReportContext) -> list[tuple[str, str]]:
    items = [
        ("model", f"{context.model_name} ({context.model_path}, {context.backend})"),
        ("data", ", ".join(context.data)),
        ("sentences", str(metrics["n"])),
        ("accuracy", f"{metrics['accuracy']:.4f}"),
        ("macro-F1", f"{metrics['macro_f1']:.4f}"),
    ]
    if metrics.get("calibration"):
        c = metrics["calibration"]
        items.append(("ECE", f"{c['ece']:.4f} ({c['bins']} bins, temperature {c['temperature']:.4g})"))
    return items


def _markdown(metrics: dict[str, Any], context: ReportContext, figures: dict[str, Path]) -> str:
    def table(head: Sequence[str], rows: list[list[str]]) -> list[str]:
        return [
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows),
        ]

    head, per_class, matrix_head, matrix = _rows(metrics)
    lines = ["# claimlens evaluation", ""]
    lines += [f"- **{key}**: {value}" for key, value in _summary(metrics, context)]
    lines += ["", "## Per class", "", *table(head, per_class), ""]
    lines += [f"![per-class F1]({figures['per_class_f1'].name})", ""]
    lines += ["## Confusion matrix", "", "Rows: gold label; columns: predicted label.", ""]
    lines += [*table(matrix_head, matrix), "", f"![confusion matrix]({figures['confusion_matrix'].name})", ""]
    if "reliability" in figures:
        lines += ["## Calibration", "", f"![reliability diagram]({figures['reliability'].name})", ""]
    return "\n".join(lines)


def _html(metrics: dict[str, Any], context: ReportContext, figures: dict[str, Path]) -> str:
    def table(head: Sequence[str], rows: list[list[str]]) -> str:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"

    def image(name: str, alt: str) -> str:
        data = base64.b64encode(figures[name].read_bytes()).decode("ascii")
        return f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>'

    head, per_class, matrix_head, matrix = _rows(metrics)
    summary = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in _summary(metrics, context)
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>claimlens evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}</style>",
        f"</head><body><h1>claimlens evaluation</h1><ul>{summary}</ul>",
        f"<h2>Per class</h2>{table(head, per_class)}{image('per_class_f1', 'per-class F1')}",
        "<h2>Confusion matrix</h2><p>Rows: gold label; columns: predicted label.</p>",
        f"{table(matrix_head, matrix)}{image('confusion_matrix', 'confusion matrix')}",
    ]
    if "reliability" in figures:
        parts.append(f"<h2>Calibration</h2>{image('reliability', 'reliability diagram')}")
    return "".join(parts) + "</body></html>\n"


def check_report_path(path: str | Path) -> Path:
    """``path`` if a report can be written there (``.md`` or ``.html``, in a folder that exists)."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"report must end in {' or '.join(FORMATS)}, got {path.name!r}")
    if not path.parent.is_dir():
        raise ValueError(f"report folder {path.parent} does not exist")
    return path


def write_report(path: str | Path, metrics: dict[str, Any], context: ReportContext) -> list[Path]:
    """Write a ``.md`` report (PNGs beside it) or a self-contained ``.html``; return the files written.

    >>> write_report("report.md", evaluate_examples(clf, examples), context)  # doctest: +SKIP
    [PosixPath('report.md'), PosixPath('report_confusion_matrix.png'), ...]
    """
    path = check_report_path(path)
    if FORMATS[path.suffix] == "html":
        with tempfile.TemporaryDirectory() as tmp:
            text = _html(metrics, context, _figures(metrics, Path(tmp) / path.stem))
        _write_atomically(path, text)
        return [path]
    figures = _figures(metrics, path.with_suffix(""))
    _write_atomically(path, _markdown(metrics, context, figures))
    return [path, *figures.values()]


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def log_report(
    files: Sequence[Path],
    metrics: dict[str, Any],
    context: ReportContext,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log the report's files (under ``evaluation/``) and ``eval_*`` metrics to MLflow; the run id.

    With ``run_id`` they go to that run (e.g. the model's training run), which keeps its status;
    without, to a new run in the experiment ``claimlens-eval``. The store is ``tracking_uri``,
    else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.

    >>> log_report(files, metrics, context, tracking_uri="sqlite:///mlflow.db")  # doctest: +SKIP
    '3f2a…'
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from inference.evaluate import flat_metrics
    from inference.registry import store_uri

    client = MlflowClient(tracking_uri=store_uri(tracking_uri))
    values = flat_metrics(metrics, "eval") | {"eval_n": float(metrics["n"])}
    if metrics.get("calibration"):
        values["eval_ece"] = metrics["calibration"]["ece"]
    created = run_id is None
    try:
        if run_id is None:
            run_id = _new_run(client, context)
        else:
            client.get_run(run_id)  # a clear error for a wrong id, before anything is logged
        for name, value in values.items():
            client.log_metric(run_id, name, float(value))
        client.set_tag(run_id, "claimlens.eval_data", ", ".join(context.data)[:5000])
        for file in files:
            client.log_artifact(run_id, str(file), artifact_path="evaluation")
    except MlflowException as err:
        if created and run_id is not None:
            client.set_terminated(run_id, "FAILED")
        raise ValueError(f"cannot log the report to MLflow: {err.message}") from None
    if created:
        client.set_terminated(run_id, "FINISHED")
    return run_id


def _new_run(client: Any, context: ReportContext) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    tags = {"claimlens.model": context.model_name, "claimlens.model_path": context.model_path}
    run = client.create_run(experiment_id, run_name=f"eval-{context.model_name}", tags=tags)
    return str(run.info.run_id)

"""Temperature scaling: one scalar T, fitted on dev after training, so that scores mean what they say.

The best-epoch model's dev logits are divided by the T that minimises their negative
log-likelihood; labels never change (dividing by T > 0 keeps the argmax), only confidence.
T travels in the model folder (``config.json``: ``claimlens.temperature``), and
``inference.predict.Classifier`` applies it. Expected calibration error on test, before
and after, goes to ``metrics.json`` and MLflow with a reliability diagram.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from inference.calibration import BINS, expected_calibration_error, gold_indices, nll, reliability, softmax
from inference.model import CONFIG_KEY, ModelInfo, check_temperature, set_temperature
from inference.plots import reliability_diagram
from inference.predict import Classifier
from inference.records import Example
from training.config import Config
from training.data import Splits
from training.tracking import Tracker

# Wide enough for a wildly over-confident model (T in the hundreds) and an under-confident one.
LOG_T_BOUNDS = (math.log(1e-2), math.log(1e3))


def fit_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """The T > 0 minimising the NLL of ``softmax(logits / T)`` on the gold columns.

    The NLL is convex in 1/T, so a bounded 1-D search over log T finds its one minimum.

    >>> fit_temperature(np.array([[4.0, 0.0], [4.0, 0.0]]), np.array([0, 1])) > 1
    True
    """
    from scipy.optimize import minimize_scalar

    if len(logits) != len(gold) or not len(gold):
        raise ValueError(f"need one row of logits per gold label, got {len(logits)} for {len(gold)}")
    result = minimize_scalar(
        lambda log_t: nll(logits, gold, math.exp(log_t)),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    return round(math.exp(float(result.x)), 6)


def held_out_logits(classifier: Classifier, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits (``LABELS`` columns) of labelled examples, and their gold columns."""
    logits = classifier.logits([e.text for e in examples], [e.context for e in examples])
    return logits, gold_indices([e.label for e in examples])


def measure(logits: np.ndarray, gold: np.ndarray, temperature: float, split: str) -> dict[str, float]:
    """NLL and ECE of ``split`` without (T=1) and with the temperature."""
    return {
        f"{split}_nll_uncalibrated": round(nll(logits, gold), 6),
        f"{split}_nll": round(nll(logits, gold, temperature), 6),
        f"{split}_ece_uncalibrated": round(expected_calibration_error(softmax(logits), gold), 6),
        f"{split}_ece": round(expected_calibration_error(softmax(logits, temperature), gold), 6),
    }


def calibrate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    info: ModelInfo,
    splits: Splits,
    config: Config,
    tracker: Tracker,
) -> dict[str, Any]:
    """Fit T on dev, set it on ``model.config`` (so the saved folder carries it), and report.

    Returns ``{"calibration": {...}}`` for ``metrics.json``: T, dev NLL and ECE, and test ECE
    before and after (``test_ece_uncalibrated``, ``test_ece``), also logged to the tracker with
    a reliability diagram (of test; of dev when there is no test split).
    """
    classifier = Classifier(model, tokenizer, info, batch_size=config.train.eval_batch_size)
    dev_logits, dev_gold = held_out_logits(classifier, splits.dev)
    temperature = fit_temperature(dev_logits, dev_gold)
    set_temperature(model.config, temperature)
    result: dict[str, Any] = {"temperature": temperature, "bins": BINS, "fitted_on": "dev"}
    result |= measure(dev_logits, dev_gold, temperature, "dev")
    split, logits, gold = "dev", dev_logits, dev_gold
    if splits.test:
        split, (logits, gold) = "test", held_out_logits(classifier, splits.test)
        result |= measure(logits, gold, temperature, "test")
    tracker.log_metrics({k: float(v) for k, v in result.items() if k not in ("bins", "fitted_on")})
    with tempfile.TemporaryDirectory() as tmp:
        curves = {
            f"T=1 (ECE {result[f'{split}_ece_uncalibrated']:.3f})": reliability(softmax(logits), gold),
            f"T={temperature:.2f} (ECE {result[f'{split}_ece']:.3f})": reliability(
                softmax(logits, temperature), gold
            ),
        }
        png = reliability_diagram(curves, f"{split} reliability", Path(tmp) / f"reliability_{split}.png")
        tracker.log_file(png, "reports")
    return {"calibration": result}


def write_temperature(model_dir: str | Path, temperature: float) -> Path:
    """Set ``claimlens.temperature`` in a model folder's ``config.json``, atomically.

    The new file is written beside the old one and renamed over it, so a reader sees the old
    config or the new one, never half of one.

    >>> write_temperature("models/quickstart", 1.42)  # doctest: +SKIP
    PosixPath('models/quickstart/config.json')
    """
    where = Path(model_dir) / "config.json"
    config = json.loads(where.read_text())
    section = config.get(CONFIG_KEY)
    if not isinstance(section, dict):
        raise ValueError(f"{where} has no {CONFIG_KEY!r} section: it was not written by claimlens-train")
    section["temperature"] = check_temperature(temperature)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=where.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, where.stat().st_mode & 0o777)
        os.replace(tmp, where)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return where

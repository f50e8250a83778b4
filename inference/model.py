"""Loading a trained model directory, refusing anything unsafe or incomplete."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from inference.inputs import PREVIOUS, Window
from inference.labels import LABELS, check_id2label

REQUIRED_FILES = ("config.json", "model.safetensors")
# The key of config.json under which a claimlens model folder describes how it reads input.
CONFIG_KEY = "claimlens"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class ModelInfo:
    """What a model directory says about itself (from its config and metrics files)."""

    name: str
    path: str
    base_model: str
    context: bool
    max_length: int
    labels: tuple[str, ...] = LABELS
    metrics: dict[str, Any] = field(default_factory=dict)
    config_digest: str = ""
    # Calibrated scores are softmax(logits / temperature); 1.0 for a folder never calibrated.
    temperature: float = 1.0
    # A context model's window: previous sentences (1-3) and next ones (0-1) it reads.
    context_before: int = 1
    context_after: int = 0

    @property
    def window(self) -> Window:
        """The context window this model reads (``PREVIOUS``, ``Window(1, 0)``: the previous sentence)."""
        return Window(self.context_before, self.context_after)


def check_temperature(value: object, where: str = "temperature") -> float:
    """A usable softmax temperature (a finite number > 0), or ``ValueError`` naming ``where``.

    >>> check_temperature(1.7)
    1.7
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{where} must be a finite number above 0, got {value!r}")
    return float(value)


def check_model_dir(path: Path) -> None:
    """Raise ``ValueError`` naming what is wrong with a model directory, if anything."""
    if not path.is_dir():
        raise ValueError(f"model directory {path} does not exist")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"model directory {path} holds pickle weights ({', '.join(pickles)}); only safetensors are loaded"
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise ValueError(f"model directory {path} is incomplete: missing {', '.join(missing)}")


def read_info(path: Path) -> ModelInfo:
    """Read the model's name, settings and metrics without loading weights.

    How the model reads input (context, max_length, labels) comes from the folder's own
    ``config.json``; ``train_config.yaml`` and ``metrics.json`` are optional extras.
    """
    where = path / "config.json"
    config = json.loads(where.read_text())
    labels = check_id2label(config.get("id2label", {}), where=str(where))
    own = config.get(CONFIG_KEY)
    if not isinstance(own, dict) or not {"context", "max_length"} <= own.keys():
        raise ValueError(
            f"{where} has no {CONFIG_KEY!r} section with context and max_length; "
            "it was not written by claimlens-train (retrain, or add the section)"
        )
    raw = (path / "train_config.yaml").read_bytes() if (path / "train_config.yaml").is_file() else b""
    metrics_file = path / "metrics.json"
    window = _window(own, where)
    return ModelInfo(
        name=str(own.get("name", path.name)),
        path=str(path),
        base_model=str(own.get("base_model", "unknown")),
        context=bool(own["context"]),
        max_length=int(own["max_length"]),
        labels=labels,
        metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        config_digest="sha256:" + hashlib.sha256(raw or where.read_bytes()).hexdigest(),
        temperature=check_temperature(own.get("temperature", 1.0), f"{where}: {CONFIG_KEY}.temperature"),
        context_before=window.before,
        context_after=window.after,
    )


def _window(own: dict[str, Any], where: Path) -> Window:
    """The folder's context window; a folder written before windows existed reads ``Window(1, 0)``."""
    try:
        window = Window(own.get("context_before", 1), own.get("context_after", 0))
    except ValueError as err:
        raise ValueError(f"{where}: {CONFIG_KEY}.{err}") from None
    if window != PREVIOUS and not own["context"]:
        raise ValueError(f"{where}: {CONFIG_KEY} sets a context window but context is false")
    return window


def describe(config: Any, info: ModelInfo) -> None:
    """Write ``info``'s reading settings into a transformers config, so the folder describes itself.

    A temperature is written when ``info`` has one other than 1.0, or when one was already set
    on ``config`` (:func:`set_temperature`, by calibration before the model is saved).
    """
    section = {
        "name": info.name,
        "base_model": info.base_model,
        "context": info.context,
        "max_length": info.max_length,
    }
    if info.context:
        section |= {"context_before": info.context_before, "context_after": info.context_after}
    earlier = (getattr(config, CONFIG_KEY, None) or {}).get("temperature")
    temperature = info.temperature if info.temperature != 1.0 else earlier
    if temperature is not None:
        section["temperature"] = check_temperature(temperature)
    setattr(config, CONFIG_KEY, section)


def set_temperature(config: Any, temperature: float) -> None:
    """Record a fitted temperature on a transformers config; ``describe`` and ``save_pretrained`` keep it.

    >>> set_temperature(model.config, 1.8)  # doctest: +SKIP
    """
    section = dict(getattr(config, CONFIG_KEY, None) or {})
    section["temperature"] = check_temperature(temperature)
    setattr(config, CONFIG_KEY, section)


def load_tokenizer_and_info(path: str | Path) -> tuple[PreTrainedTokenizerBase, ModelInfo]:
    """Check a model directory, then load its tokenizer and info (no weights: the ONNX path)."""
    path = Path(path)
    check_model_dir(path)
    info = read_info(path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    return tokenizer, info


def load_model_dir(
    path: str | Path,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    """Load weights (safetensors only), tokenizer and info from a model directory.

    >>> model, tokenizer, info = load_model_dir("models/quickstart")  # doctest: +SKIP
    """
    tokenizer, info = load_tokenizer_and_info(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, local_files_only=True, trust_remote_code=False
    )
    model.eval()
    return model, tokenizer, info

"""Loading a trained model directory, refusing anything unsafe or incomplete."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from inference.labels import LABELS, check_id2label

REQUIRED_FILES = ("config.json", "model.safetensors", "train_config.yaml", "metrics.json")
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
    """Read the model's name, settings and metrics without loading weights."""
    raw_config = (path / "train_config.yaml").read_bytes()
    train_config = yaml.safe_load(raw_config) or {}
    model_cfg = train_config.get("model", {})
    config = json.loads((path / "config.json").read_text())
    check_id2label(config.get("id2label", {}), where=str(path / "config.json"))
    return ModelInfo(
        name=str(train_config.get("name", path.name)),
        path=str(path),
        base_model=str(model_cfg.get("base", "unknown")),
        context=bool(model_cfg.get("context", False)),
        max_length=int(model_cfg.get("max_length", 128)),
        metrics=json.loads((path / "metrics.json").read_text()),
        config_digest="sha256:" + hashlib.sha256(raw_config).hexdigest(),
    )


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
    check_id2label(model.config.id2label, where=str(path))
    model.eval()
    return model, tokenizer, info

"""Writing a model directory so that it appears only when complete."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from inference.model import ModelInfo, check_model_dir, describe
from training.config import Config


def save_model_dir(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: Config,
    metrics: dict[str, Any],
    target: Path,
) -> Path:
    """Write weights (safetensors), tokenizer, ``train_config.yaml`` and ``metrics.json``.

    ``config.json`` carries the labels and a ``claimlens`` section (context, its window,
    max_length), so that the folder loads and serves without the training config.
    """
    info = model_info(config, target)
    describe(model.config, info)  # config.json alone says how the model reads its input
    return write_model_dir(model, tokenizer, config.to_yaml(), metrics, target)


def model_info(config: Config, path: Path | str = "") -> ModelInfo:
    """How a model trained with ``config`` reads its input: what training, its dev scoring and
    the saved folder all use.

    >>> model_info(load_config("configs/default.yaml")).window  # doctest: +SKIP
    Window(before=1, after=0)
    """
    return ModelInfo(
        name=config.name,
        path=str(path),
        base_model=config.model.base,
        context=config.model.context,
        max_length=config.model.max_length,
        context_before=config.model.context_before,
        context_after=config.model.context_after,
    )


def write_model_dir(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_config: str,
    metrics: dict[str, Any],
    target: Path,
) -> Path:
    """Write ``model`` (its config as it is), ``tokenizer``, ``train_config`` (YAML text) and ``metrics``.

    Everything goes to a temporary sibling first and is renamed into place, so an
    interrupted save never leaves a half-written model where ``predict`` would look.

    >>> write_model_dir(model, tokenizer, "name: x\n", {}, Path("models/x"))  # doctest: +SKIP
    PosixPath('models/x')
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "train_config.yaml").write_text(train_config)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        check_model_dir(staging)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(retired / target.name)
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target

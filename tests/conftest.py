"""Shared fixtures: a tiny random BERT built in memory, and one real tiny training run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE = [
    ("Rebels said they had captured the town.", "claim"),
    ("The ministry denied the report, calling it propaganda.", "denial"),
    ("Police said three men were arrested.", "official_statement"),
    ("The town is a historic market centre.", "other"),
]


def tiny_config(**overrides: object):
    from training.config import Config

    data = {
        "name": "unit",
        "data": {"train": [{"path": "unused.jsonl"}], "dev": [{"path": "unused.jsonl"}]},
        "model": {"base": "tiny-random", "max_length": 32},
    }
    data.update(overrides)
    return Config.model_validate(data)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny BERT saved as a complete model directory."""
    import torch

    from training.modeling import tiny_model, tiny_tokenizer
    from training.save import save_model_dir

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer([t for t, _ in SAMPLE] * 3)
    model = tiny_model(len(tokenizer), max_length=32)
    target = tmp_path_factory.mktemp("models") / "unit"
    return save_model_dir(model, tokenizer, tiny_config(), {"dev": {"macro_f1": 0.0}}, target)


@pytest.fixture(scope="session")
def tiny_context_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from training.modeling import tiny_model, tiny_tokenizer
    from training.save import save_model_dir

    torch.manual_seed(1)
    tokenizer = tiny_tokenizer([t for t, _ in SAMPLE] * 3)
    model = tiny_model(len(tokenizer), max_length=32)
    config = tiny_config(
        name="unit-context", model={"base": "tiny-random", "max_length": 32, "context": True}
    )
    target = tmp_path_factory.mktemp("models") / "unit-context"
    return save_model_dir(model, tokenizer, config, {}, target)


@pytest.fixture(scope="session")
def sharp_context_model_dir(tiny_context_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny context model with its classifier weights scaled up.

    An untrained tiny model scores every input about 0.25 per label; sharper logits make the
    difference a context makes visible at a test's tolerance.
    """
    import shutil

    from safetensors.torch import load_file, save_file

    model_dir = tmp_path_factory.mktemp("sharp") / "unit-context"
    shutil.copytree(tiny_context_model_dir, model_dir)
    weights = load_file(model_dir / "model.safetensors")
    weights["classifier.weight"] *= 300
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    return model_dir


def train_cli(
    cwd: Path, config: str, *overrides: str, link_data: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m training`` on ``configs/<config>.yaml`` in ``cwd`` (with the repo's data linked)."""
    if link_data:
        (cwd / "data").symlink_to(ROOT / "data")
    return subprocess.run(
        [sys.executable, "-m", "training", "--config", str(ROOT / "configs" / f"{config}.yaml"), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"MLFLOW_TRACKING_URI": ""},
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """configs/tiny.yaml trained for real through the CLI into a temporary MLflow store."""
    work = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    proc = train_cli(work, "tiny", f"tracking.uri={uri}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"work": work, "uri": uri, "model_dir": work / "models" / "tiny", "stdout": proc.stdout}


def polnear_root(tmp_path: Path, texts: dict[str, str], anns: dict[str, str] | None = None) -> Path:
    """A data root laid out like ``polnear/data/train`` holding ``texts`` (and BRAT ``anns``)."""
    root = tmp_path / "root"
    text_dir = root / "polnear" / "data" / "train" / "text"
    text_dir.mkdir(parents=True)
    for name, text in texts.items():
        (text_dir / f"{name}.txt").write_text(text)
    if anns:
        ann_dir = text_dir.parent / "attributions"
        ann_dir.mkdir()
        for name, ann in anns.items():
            (ann_dir / f"{name}_x1.ann").write_text(ann)
    return root

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

    model_dir = tmp_path_factory.mktemp("sharp") / "unit-context"
    shutil.copytree(tiny_context_model_dir, model_dir)
    return sharpen(model_dir)


def sharpen(model_dir: Path) -> Path:
    """Scale a tiny model's classifier weights up 300 times, in place (see ``sharp_context_model_dir``)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    weights["classifier.weight"] *= 300
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    return model_dir


@pytest.fixture(scope="session")
def sharp_window_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sharpened tiny context model whose window is the two previous sentences and the next one
    (``model.context_before: 2``, ``context_after: 1``), reading up to 64 tokens."""
    import torch

    from training.modeling import tiny_model, tiny_tokenizer
    from training.save import save_model_dir

    torch.manual_seed(2)
    tokenizer = tiny_tokenizer([t for t, _ in SAMPLE] * 3)
    model = tiny_model(len(tokenizer), max_length=64)
    window = {"context": True, "context_before": 2, "context_after": 1}
    config = tiny_config(name="unit-window", model={"base": "tiny-random", "max_length": 64, **window})
    target = tmp_path_factory.mktemp("window") / "unit-window"
    return sharpen(save_model_dir(model, tokenizer, config, {}, target))


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


def run_python(code: str, args: list[str], cwd: Path, pythonpath: str, timeout: int = 300) -> str:
    """Run ``python -c code *args`` in a fresh interpreter in ``cwd``; its stdout (it must exit 0).

    Offline, with no MLflow tracking URI inherited and ``PYTHONPATH`` set to ``pythonpath``
    ("" so that only what is installed, or logged with a model, is importable).
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": pythonpath, "MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


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


@pytest.fixture(scope="session")
def official_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny label model with official_statement's bias raised: every sentence is one, so a
    speaker model reads every sentence."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    model_dir = tmp_path_factory.mktemp("official") / "unit-official"
    shutil.copytree(tiny_model_dir, model_dir)
    index = json.loads((model_dir / "config.json").read_text())["label2id"]["official_statement"]
    weights = load_file(model_dir / "model.safetensors")
    weights["classifier.bias"][index] += 20.0
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    return model_dir


# The tiny tagger's article: a speaker and cue in the first sentence, carried into the second.
SPEAKER_ARTICLE = (
    "Commander Zorblatov said the bridge was closed. It will stay shut until spring.\n\nThe town is old."
)
HOSTILE_SPEAKER = "Commander <img src=x onerror=pwned=3> Zorblatov"  # every token of it is SOURCE


def lookup_tagger(texts: list[str], source: str = HOSTILE_SPEAKER, cue: str = "said"):
    """A tiny speaker model (and tokenizer) whose tag for a token is fixed by the token alone:
    ``source``'s tokens are SOURCE, ``cue``'s are CUE, every other token is O.

    Positions, segments and every layer's output projections are zeroed, so each layer hands
    its input on and a token's hidden state is its own embedding; embeddings and the head's
    rows are zero-mean patterns (which LayerNorm keeps), one per tag.
    """
    import torch

    from inference.speakers import TAGS
    from training.speakers_train import SpeakerModel, build_token_model

    model, tokenizer = build_token_model(
        SpeakerModel(base="tiny-random", max_length=64), [*texts, source, cue]
    )
    width = model.config.hidden_size
    patterns = torch.zeros(3, width)
    for i in range(3):
        patterns[i, 2 * i], patterns[i, 2 * i + 1] = 1.0, -1.0
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "position_embeddings" in name or "token_type_embeddings" in name or ".output.dense." in name:
                tensor.zero_()
        embeddings = model.bert.embeddings.word_embeddings.weight
        embeddings[:] = patterns[0]
        for row, words in ((1, source), (2, cue)):
            embeddings[tokenizer(words, add_special_tokens=False)["input_ids"]] = patterns[row]
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        for row, tag in ((0, "O"), (1, "B-SOURCE"), (2, "B-CUE")):
            model.classifier.weight[TAGS.index(tag)] = patterns[row]
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_speaker_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``lookup_tagger`` over ``SPEAKER_ARTICLE`` saved as a speaker model folder."""
    from training.speakers_train import SpeakerModel, SpeakersConfig, save_speaker_model

    model, tokenizer = lookup_tagger([SPEAKER_ARTICLE])
    config = SpeakersConfig(name="unit-speakers", model=SpeakerModel(base="tiny-random", max_length=64))
    target = tmp_path_factory.mktemp("speakers") / "unit-speakers"
    return save_speaker_model(model, tokenizer, config, {}, target)


def pool_root(tmp_path: Path, n: int = 8) -> Path:
    """A data root with ``n`` made-up documents of each pool source, in the shared datasets' layout.

    Each polnear story has a one-word sentence and one over 1,500 characters (both skipped by
    the pool) besides three usable ones; the other sources hold two usable sentences a document.
    """
    root = tmp_path / "pool-root"
    folders = {
        "text": root / "polnear" / "data" / "train" / "text",
        "nd": root / "newsdiscourse" / "extracted" / "train" / "Politics",
        "clef": root / "clef2019_checkthat_task1" / "training",
    }
    for folder in [*folders.values(), root / "fnc1", root / "emergent", root / "liar"]:
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folders["text"] / f"story{i}.txt").write_text(
            f"Officials in town {i} said the bridge would reopen. Rebels claimed they took hill {i}. "
            f"Reuters.\n{'word ' * 320}\nThe ministry denied the report about town {i}.\n"
        )
        (folders["nd"] / f"Reuters_{i}.txt").write_text(
            f"H Talks on district {i} stall\nS1 The president said talks on district {i} had stalled.\n"
            "S2 Opposition leaders denied that claim.\n"
        )
    bodies = [f'{i},"Police said {i} people were hurt. A spokesman denied any cover-up."' for i in range(n)]
    (root / "fnc1" / "train_bodies.csv").write_text("Body ID,articleBody\n" + "\n".join(bodies) + "\n")
    headlines = [f"{i},c,Analysts say Apple will sell {i} million watches,for,e-{i},c-{i}" for i in range(n)]
    (root / "emergent" / "url-versions-2015-06-14-clean-train.csv").write_text(
        ",claimHeadline,articleHeadline,articleHeadlineStance,articleId,claimId\n"
        + "\n".join(headlines)
        + "\n"
    )
    statements = [
        f'{100 + i}.json\tfalse\tSays the governor cut {i} "good" jobs. He denied it later.\tjobs\tjo\tGovernor'
        "\tTexas\trepublican\t0\t0\t0\t0\t0\ta speech"
        for i in range(n)
    ]
    (root / "liar" / "train.tsv").write_text("\n".join(statements) + "\n")
    lines = [f"{k + 1}\tSPEAKER\tWe created {k} million jobs last year.\t0" for k in range(n)]
    (folders["clef"] / "20160101_debate.tsv").write_text(
        "\n".join([*lines, f"{n + 1}\tSYSTEM\t(APPLAUSE)\t0"]) + "\n"
    )
    return root

import json
import shutil

import pytest

from inference.model import load_model_dir
from inference.predict import Classifier


def copy_of(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_loads_a_complete_directory(tiny_model_dir):
    model, _tokenizer, info = load_model_dir(tiny_model_dir)
    assert info.name == "unit" and info.base_model == "tiny-random"
    assert info.config_digest.startswith("sha256:")
    assert model.config.id2label == {0: "claim", 1: "denial", 2: "official_statement", 3: "other"}


def test_pickle_weights_are_refused(tiny_model_dir, tmp_path):
    model_dir = copy_of(tiny_model_dir, tmp_path)
    (model_dir / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match=r"pickle weights \(pytorch_model.bin\)"):
        Classifier.load(model_dir)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "train_config.yaml", "metrics.json"])
def test_missing_files_are_named(tiny_model_dir, tmp_path, name):
    model_dir = copy_of(tiny_model_dir, tmp_path)
    (model_dir / name).unlink()
    with pytest.raises(ValueError, match=f"incomplete: missing {name}"):
        Classifier.load(model_dir)


def test_label_set_mismatch_is_refused(tiny_model_dir, tmp_path):
    model_dir = copy_of(tiny_model_dir, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    config["id2label"] = {"0": "claim", "1": "denial", "2": "statement", "3": "other"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="differ from the code"):
        Classifier.load(model_dir)


def test_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Classifier.load(tmp_path / "nowhere")

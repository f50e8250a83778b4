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


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
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


def test_a_folder_without_training_files_reads_its_settings_from_config_json(
    tiny_context_model_dir, tmp_path
):
    model_dir = copy_of(tiny_context_model_dir, tmp_path)
    (model_dir / "train_config.yaml").unlink()
    (model_dir / "metrics.json").unlink()
    clf = Classifier.load(model_dir)
    assert (clf.info.context, clf.info.max_length, clf.info.name) == (True, 32, "unit-context")
    # The context really is read: the same sentence scores differently after another one.
    alone, after = clf.predict(["Police said so.", "Police said so."], [None, "Rebels denied it."])
    assert alone.scores != after.scores


def test_settings_come_from_config_json_not_the_training_config(tiny_context_model_dir, tmp_path):
    model_dir = copy_of(tiny_context_model_dir, tmp_path)
    (model_dir / "train_config.yaml").write_text("model: {context: false, max_length: 8}\n")
    assert Classifier.load(model_dir).info.context is True


def test_a_config_without_the_claimlens_section_is_refused(tiny_model_dir, tmp_path):
    model_dir = copy_of(tiny_model_dir, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    del config["claimlens"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no 'claimlens' section"):
        Classifier.load(model_dir)


def test_a_permuted_label_order_is_followed(sharp_context_model_dir, tmp_path):
    model_dir = copy_of(sharp_context_model_dir, tmp_path)
    want = Classifier.load(model_dir).predict(["Police said so.", "Rebels denied it."])
    config = json.loads((model_dir / "config.json").read_text())
    # Swap what outputs 0 and 3 mean, and swap the weights that produce them: same model.
    config["id2label"] = {"0": "other", "1": "denial", "2": "official_statement", "3": "claim"}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (model_dir / "config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    for name in ("classifier.weight", "classifier.bias"):
        weights[name] = weights[name][[3, 1, 2, 0]].contiguous()
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    got = Classifier.load(model_dir).predict(["Police said so.", "Rebels denied it."])
    assert [(p.label, p.scores) for p in got] == [(p.label, p.scores) for p in want]

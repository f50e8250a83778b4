"""The ONNX path: exports (traced and fused) equal to torch at any shape, int8 with torch's
labels, static int8 deaf to batch mates, calibration data, errors, CLI."""

import json
import re
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from inference.backends import ONNX_FILES, OnnxBackend
from inference.calibration import softmax
from inference.export import Calibration, export_onnx, int8_summary
from inference.predict import Classifier
from tests.conftest import ROOT, SAMPLE

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


def write_pairs(path):
    """PAIRS as a labelled file: each text once as a document of its own, once after the one before."""
    rows = [{"doc": f"alone-{i}", "idx": 0, "text": t, "label": "other"} for i, t in enumerate(TEXTS)]
    rows += [{"doc": "story", "idx": i, "text": t, "label": "other"} for i, t in enumerate(TEXTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Calibration:
    """Static int8 calibrated on the tiny models' own words: gold sentences are mostly [UNK] to
    their tokenizer, and ranges seen on those would clip the test sentences'."""
    return Calibration(data=str(write_pairs(tmp_path_factory.mktemp("calibration") / "pairs.jsonl")))


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory, calibration):
    model_dir = tmp_path_factory.mktemp("onnx") / "unit"
    shutil.copytree(tiny_model_dir, model_dir)
    export_onnx(model_dir, quantize="int8", calibration=calibration)
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
def decisive(sharp_context_model_dir, tmp_path_factory, calibration):
    """The sharp tiny context model sharpened further (``_sharpen``), exported to fp32 and static int8."""
    model_dir = tmp_path_factory.mktemp("decisive") / "unit-context"
    shutil.copytree(sharp_context_model_dir, model_dir)
    _sharpen(model_dir)
    export_onnx(model_dir, quantize="int8", calibration=calibration)
    return model_dir


@pytest.fixture(scope="module")
def decisive_dynamic(decisive, tmp_path_factory):
    """The decisive model with dynamic int8."""
    model_dir = tmp_path_factory.mktemp("dynamic") / "unit-context"
    shutil.copytree(decisive, model_dir)
    export_onnx(model_dir, quantize="int8", int8="dynamic")
    return model_dir


@pytest.fixture(scope="module")
def fused(decisive, tmp_path_factory, calibration):
    """The decisive model exported with ONNX Runtime's transformer fusions."""
    model_dir = tmp_path_factory.mktemp("fused") / "unit-context"
    shutil.copytree(decisive, model_dir)
    export_onnx(model_dir, quantize="int8", fuse=True, calibration=calibration)
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
    # Static int8 quantises the MatMuls around the fused attention, which stays float.
    assert int8["Attention"] == layers and int8["QAttention"] == 0
    assert int8["DequantizeLinear"] > 0 and int8["DynamicQuantizeLinear"] == 0
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


def weight_scales(path) -> dict[str, list[int]]:
    """The dims of each quantised weight's scale: static int8 dequantises weights stored as
    int8 initializers, dynamic int8 names their scales after the MatMul (or fused QKV) weight."""
    import onnx

    graph = onnx.load(str(path)).graph
    dims = {i.name: list(i.dims) for i in graph.initializer}
    static = {
        n.input[0]: dims[n.input[1]]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in dims
    }
    if static:
        return static
    return {n: d for n, d in dims.items() if n.endswith("_scale") and ("MatMul" in n or "qkv_weight" in n)}


@pytest.mark.parametrize("export", ["exported", "fused", "decisive_dynamic"])
def test_int8_weights_have_one_scale_per_output_channel(export, request):
    # One scale per weight matrix cost the context default 0.022 macro-F1; per channel, nothing.
    weights = weight_scales(request.getfixturevalue(export) / ONNX_FILES["int8"])
    # At least Q, K, V, output and the two feed-forward matmuls in 2 layers; fused, the QKV weight
    # is the Attention node's, which static int8 leaves float and dynamic int8 quantises.
    assert len(weights) >= {"fused": 3 * 2}.get(export, 6 * 2), weights
    assert all(len(dims) == 1 and dims[0] > 1 for dims in weights.values()), weights


def scores_alone_and_among(clf: Classifier, text: str, context: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``text``'s scores run as a batch of one, and run first in one padded batch with longer mates."""
    build = clf.inputs
    rows = build([text, *(t for t, _ in LONG_MATES)], [context, *(c for _, c in LONG_MATES)])
    assert len(rows[0].input_ids) < min(len(r.input_ids) for r in rows[1:])  # so it is padded among them
    alone, among = clf.backend(build.batch(rows[:1])), clf.backend(build.batch(rows))
    return softmax(alone, clf.temperature)[0], softmax(among, clf.temperature)[0]


LONG_MATES = [
    (TEXTS[-1], TEXTS[2]),
    (TEXTS[-1] + " " + TEXTS[1], TEXTS[-1]),
    (TEXTS[1] + " " + TEXTS[0], TEXTS[-1]),
]


@pytest.mark.parametrize(("export", "scheme"), [("decisive", "static"), ("decisive_dynamic", "dynamic")])
def test_static_int8_scores_a_sentence_alike_alone_and_among_long_mates(export, scheme, request):
    # The server's micro-batches and offline predict put a sentence among different mates.
    # Dynamic int8 takes its activation scales from the batch, padding included, so the same
    # sentence scores differently: the dynamic case shows that this test can tell.
    model_dir = request.getfixturevalue(export)
    clf = Classifier.load(model_dir, backend="onnx", quantize="int8")
    assert isinstance(clf.backend, OnnxBackend) and clf.backend.quantization == scheme
    differences = []
    for text, context in zip(TEXTS[:4], CONTEXTS[:4], strict=True):
        alone, among = scores_alone_and_among(clf, text, context)
        differences.append(float(np.abs(alone - among).max()))
    one_by_one = Classifier.load(model_dir, backend="onnx", quantize="int8", batch_size=1).predict(*PAIRS)
    for a, b in zip(one_by_one, clf.predict(*PAIRS), strict=True):
        differences += [abs(a.scores[k] - b.scores[k]) for k in a.scores]
    if scheme == "static":
        assert max(differences) <= 1e-5, differences
    else:
        assert max(differences) > 1e-3, differences


def test_static_int8_calibrates_on_the_corpus_without_the_shared_datasets(
    tiny_model_dir, tmp_path, monkeypatch
):
    # Gold train is stand-off: without ../shared/datasets its texts are missing, and the
    # corpus train split (in the repository) calibrates instead.
    monkeypatch.chdir(ROOT)
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    calibration = Calibration(data_root=str(tmp_path / "no-datasets"), sentences=20)
    assert calibration.examples()[0] == "data/corpus/train.jsonl"
    path = export_onnx(model_dir, quantize="int8", calibration=calibration)
    assert (
        int8_summary(path) == "int8: static, calibrated (minmax) on 20 sentences of data/corpus/train.jsonl"
    )
    clf = Classifier.load(model_dir, backend="onnx", quantize="int8")
    assert isinstance(clf.backend, OnnxBackend) and clf.backend.quantization == "static"
    assert len(clf.predict(TEXTS, CONTEXTS)) == len(TEXTS)
    monkeypatch.chdir(tmp_path)  # neither split reachable: say what to do
    with pytest.raises(
        ValueError, match=r"no calibration sentences .*--calibration-data FILE.*--int8 dynamic"
    ):
        export_onnx(model_dir, quantize="int8", calibration=calibration)


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
    with pytest.raises(ValueError, match="int8 must be one of static, dynamic, got 'float8'"):
        export_onnx(model_dir, quantize="int8", int8="float8")
    for quantize, int8 in (("none", "static"), ("int8", "dynamic")):
        with pytest.raises(ValueError, match="calibration settings apply to static int8 only"):
            export_onnx(model_dir, quantize=quantize, int8=int8, calibration=Calibration())
    with pytest.raises(ValueError, match="calibration sentences must be a whole number of at least 1, got 0"):
        Calibration(sentences=0)
    with pytest.raises(ValueError, match="calibration method must be one of minmax, percentile, entropy"):
        Calibration(method="kl")
    with pytest.raises(ValueError, match=r"calibration data: data file .*missing.jsonl does not exist"):
        export_onnx(model_dir, quantize="int8", calibration=Calibration(data=str(tmp_path / "missing.jsonl")))
    assert not (model_dir / ONNX_FILES["none"]).exists()  # every refusal came before any export


def test_bad_export_flags_exit_2_with_a_message(tiny_model_dir, tmp_path, capsys):
    from inference.cli import main

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    base = ["export", "--model", str(model_dir)]
    cases = [
        (["--quantize", "none", "--int8", "dynamic"], "--int8 applies only with --quantize int8"),
        (
            ["--int8", "dynamic", "--calibration-sentences", "50"],
            "calibration settings apply to static int8 only",
        ),
        (["--calibration-method", "entropy"], "calibration settings apply to static int8 only"),
        (["--quantize", "int8", "--calibration-sentences", "0"], "at least 1, got 0"),
        (["--int8", "fp16"], "invalid choice: 'fp16'"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main([*base, *args])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    assert not (model_dir / ONNX_FILES["none"]).exists()


def test_cli_export_then_predict_with_onnx(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    pairs = write_pairs(tmp_path / "pairs.jsonl")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "inference", *args], capture_output=True, text=True, timeout=120
        )

    missing = cli("predict", "--model", str(model_dir), "--backend", "onnx", "Police said so.")
    assert missing.returncode == 2 and "claimlens export" in missing.stderr
    done = cli(
        "export", "--model", str(model_dir), "--quantize", "int8", "--calibration-data", str(pairs),
        "--calibration-sentences", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "model.int8.onnx" in done.stdout
    assert f"int8: static, calibrated (minmax) on 5 sentences of {pairs}" in done.stdout
    out = cli(
        "predict", "--model", str(model_dir), "--backend", "onnx", "--quantize", "int8", "Police said so."
    )
    assert out.returncode == 0, out.stderr
    assert '"label"' in out.stdout
    dynamic = cli("export", "--model", str(model_dir), "--int8", "dynamic")  # --int8 alone means int8
    assert dynamic.returncode == 0, dynamic.stderr
    assert "int8: dynamic" in dynamic.stdout


def test_an_mpnet_model_without_token_type_ids_exports_to_fp32_and_static_int8(tmp_path, calibration):
    # The teacher's architecture: MPNet reads no token_type_ids, so the tracer drops that input
    # and calibration must not feed it.
    import torch
    from transformers import MPNetConfig, MPNetForSequenceClassification

    from inference.labels import LABELS
    from tests.conftest import tiny_config
    from training.modeling import tiny_tokenizer
    from training.save import save_model_dir

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(TEXTS * 3)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    config = MPNetConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = MPNetForSequenceClassification(config)
    with torch.no_grad():  # scores far from uniform, so that a wrong graph shows
        model.classifier.out_proj.weight.mul_(50)
    settings = tiny_config(name="mp", model={"base": "tiny-random", "max_length": 64, "context": True})
    model_dir = save_model_dir(model, tokenizer, settings, {}, tmp_path / "mp")
    export_onnx(model_dir, quantize="int8", calibration=calibration)
    import onnx

    names = [i.name for i in onnx.load(str(model_dir / ONNX_FILES["int8"])).graph.input]
    assert names == ["input_ids", "attention_mask"]
    assert_scores_match_torch(model_dir, *PAIRS)
    want = Classifier.load(model_dir).predict(*PAIRS)
    got = Classifier.load(model_dir, backend="onnx", quantize="int8").predict(*PAIRS)
    assert max(abs(a.scores[k] - b.scores[k]) for a, b in zip(want, got, strict=True) for k in LABELS) < 0.1

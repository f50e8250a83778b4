"""ONNX Runtime session settings: the defaults are unchanged, each setting reaches the session,
and no setting changes the answer."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pytest

from inference.backends import OnnxBackend, OrtSettings, default_threads
from inference.export import export_onnx
from inference.model import load_tokenizer_and_info
from inference.predict import Classifier
from tests.conftest import SAMPLE

TEXTS = [t for t, _ in SAMPLE]
CONTEXTS = [None, *TEXTS[:-1]]
TUNED = OrtSettings(
    graph="basic",
    cpu_mem_arena=False,
    config=(("session.intra_op.allow_spinning", "0"), ("session.dynamic_block_base", "4")),
)


@pytest.fixture(scope="module")
def int8_dir(sharp_context_model_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("ort") / "unit-context"
    shutil.copytree(sharp_context_model_dir, model_dir)
    export_onnx(model_dir, quantize="int8")
    return model_dir


def test_the_defaults_are_the_sessions_claimlens_always_made():
    options = OrtSettings().session_options()
    assert options.intra_op_num_threads == default_threads()
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.enable_cpu_mem_arena is True
    for key, _ in TUNED.config:
        with pytest.raises(RuntimeError, match="does not have configuration"):  # unset: ORT's own default
            options.get_session_config_entry(key)


def test_each_setting_reaches_the_session(int8_dir):
    session = OnnxBackend(int8_dir / "model.int8.onnx", threads=1, settings=TUNED).session
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.enable_cpu_mem_arena is False
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.dynamic_block_base") == "4"


def test_tuned_settings_give_the_same_predictions(int8_dir):
    tokenizer, info = load_tokenizer_and_info(int8_dir)
    default = Classifier.load(int8_dir, backend="onnx", quantize="int8")
    tuned = Classifier(OnnxBackend(int8_dir / "model.int8.onnx", 1, TUNED), tokenizer, info, batch_size=2)
    want, got = default.predict(TEXTS, CONTEXTS), tuned.predict(TEXTS, CONTEXTS)
    assert [p.label for p in got] == [p.label for p in want]
    np.testing.assert_allclose(
        default.logits(TEXTS, CONTEXTS), tuned.logits(TEXTS, CONTEXTS), rtol=0, atol=1e-4
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graph": "fastest"}, "graph must be one of disabled, basic, extended, all"),
        ({"cpu_mem_arena": "no"}, "cpu_mem_arena must be true or false"),
        ({"config": (("session.dynamic_block_base", 4),)}, "pairs of strings"),
        ({"config": ("session.dynamic_block_base",)}, "pairs of strings"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OrtSettings(**kwargs)

"""Where the forward pass runs: PyTorch, or ONNX Runtime (fp32, or int8: static by default).

A backend takes the tokenizer's numpy arrays and returns logits as a numpy array, so that
``Classifier`` does the same tokenising, batching and scoring whichever runs the model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from transformers import PreTrainedModel

BACKENDS = ("torch", "onnx")
QUANTIZE = ("none", "int8")
ONNX_FILES = {"none": "model.onnx", "int8": "model.int8.onnx"}
# How model.int8.onnx was quantised (see inference/export.py), in its ONNX metadata: "static"
# (fixed activation scales) or "dynamic" (scales per batch); files exported before the key
# existed are dynamic.
INT8_SCHEMES = ("static", "dynamic")
INT8_KEY = "claimlens.int8"
CALIBRATION_KEY = "claimlens.calibration"  # static int8: what it was calibrated on (JSON)


class Backend(Protocol):
    name: str
    input_names: tuple[str, ...]

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray: ...


def default_threads() -> int:
    """The cores this process may use: more threads than that only contend."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_choice(backend: str, quantize: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if backend == "torch" and quantize != "none":
        raise ValueError("quantize=int8 needs backend=onnx (export the model with --quantize int8)")


class TorchBackend:
    """The fine-tuned PyTorch model, run under ``inference_mode``."""

    name: str = "torch"

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model.eval()
        self.input_names: tuple[str, ...] = tuple(
            n for n in ("input_ids", "attention_mask", "token_type_ids") if n in _forward_args(model)
        )

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        # A model shared with a training loop is switched back to train mode between
        # evaluations; predicting with dropout on gives noisy, wrong scores.
        if self.model.training:
            self.model.eval()
        with torch.inference_mode():
            tensors = {n: torch.from_numpy(inputs[n]) for n in self.input_names if n in inputs}
            return self.model(**tensors).logits.float().numpy()


def _forward_args(model: PreTrainedModel) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


# ONNX Runtime's graph optimisation levels by the names its documentation uses.
GRAPH_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class OrtSettings:
    """How an ONNX Runtime session runs, beyond its thread count; the defaults are claimlens's own.

    ``config`` holds session config entries (``SessionOptions.add_session_config_entry``),
    e.g. ``("session.intra_op.allow_spinning", "0")`` or ``("session.dynamic_block_base", "4")``.

    >>> OrtSettings(graph="basic", config=(("session.intra_op.allow_spinning", "0"),)).graph
    'basic'
    """

    graph: str = "all"
    cpu_mem_arena: bool = True
    config: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.graph not in GRAPH_LEVELS:
            raise ValueError(f"graph must be one of {', '.join(GRAPH_LEVELS)}, got {self.graph!r}")
        if not isinstance(self.cpu_mem_arena, bool):
            raise ValueError(f"cpu_mem_arena must be true or false, got {self.cpu_mem_arena!r}")
        for entry in self.config:
            if not (isinstance(entry, tuple) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
                raise ValueError(f"config entries must be (key, value) pairs of strings, got {entry!r}")

    def session_options(self, threads: int | None = None) -> Any:
        """``onnxruntime.SessionOptions`` for one CPU session of ``threads`` (default: all cores)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1  # one graph at a time: the parallelism is within each op
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[self.graph])
        options.enable_cpu_mem_arena = self.cpu_mem_arena
        for key, value in self.config:
            options.add_session_config_entry(key, value)
        return options


class OnnxBackend:
    """An exported model (see ``inference.export``) in an ONNX Runtime CPU session."""

    def __init__(self, path: Path, threads: int | None = None, settings: OrtSettings | None = None) -> None:
        import onnxruntime as ort

        options = (settings or OrtSettings()).session_options(threads)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.name = "onnx_int8" if path.name == ONNX_FILES["int8"] else "onnx_fp32"
        metadata = self.session.get_modelmeta().custom_metadata_map
        # "none", "static" or "dynamic": only static int8 scores a sentence alike in any batch.
        self.quantization = metadata.get(INT8_KEY, "dynamic" if self.name == "onnx_int8" else "none")

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.int64) for n in self.input_names}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


def onnx_path(model_dir: Path, quantize: str) -> Path:
    """The exported file for ``quantize``; a clear error when it was never exported."""
    path = model_dir / ONNX_FILES[quantize]
    if not path.is_file():
        flag = " --quantize int8" if quantize == "int8" else ""
        raise ValueError(
            f"{path} does not exist: run `claimlens export --model {model_dir} --format onnx{flag}` first"
        )
    return path

"""Exporting a model directory to ONNX (fp32), and quantising it to int8, beside its weights."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

from inference.backends import ONNX_FILES
from inference.model import load_model_dir

# Attention heads see an additive [batch, 1, 1, seq] mask built here rather than inside
# transformers: its own mask helper traces padding lengths as constants, which would freeze
# the exported graph to the example's shape.
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Exportable(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        keep = attention_mask[:, None, None, :].to(torch.float32)
        mask = (1.0 - keep) * torch.finfo(torch.float32).min
        return self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids).logits


def export_onnx(model_dir: str | Path, quantize: str = "none") -> Path:
    """Write ``model.onnx`` (and, for ``quantize="int8"``, ``model.int8.onnx``) into ``model_dir``.

    >>> export_onnx("models/quickstart", quantize="int8")  # doctest: +SKIP
    PosixPath('models/quickstart/model.int8.onnx')
    """
    if quantize not in ONNX_FILES:
        raise ValueError(f"quantize must be one of {', '.join(ONNX_FILES)}, got {quantize!r}")
    model_dir = Path(model_dir)
    model, tokenizer, _ = load_model_dir(model_dir)
    # Eager attention exports to plain MatMul/Softmax, which ONNX Runtime runs (and int8
    # quantises) faster on a CPU than the graph traced from SDPA.
    model.set_attn_implementation("eager")
    fp32 = model_dir / ONNX_FILES["none"]
    example = tokenizer(
        ["A short sentence.", "A second, slightly longer sentence."], padding=True, return_tensors="pt"
    )
    example.setdefault("token_type_ids", torch.zeros_like(example["input_ids"]))
    # Written under a temporary name, then renamed: a crash leaves no half-written model file.
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".export-") as tmp:
        tmp_fp32 = Path(tmp) / fp32.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow
            torch.onnx.export(
                _Exportable(model.eval()),
                tuple(example[n] for n in INPUTS),
                str(tmp_fp32),
                input_names=list(INPUTS),
                output_names=["logits"],
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in INPUTS}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp_int8 = Path(tmp) / ONNX_FILES["int8"]
            # Per-channel scales: one scale per weight matrix cost the context model 0.022
            # macro-F1 on the gold test split; per channel it lost nothing (benchmarks/inference.py).
            quantize_dynamic(str(tmp_fp32), str(tmp_int8), weight_type=QuantType.QInt8, per_channel=True)
            tmp_int8.replace(model_dir / ONNX_FILES["int8"])
        tmp_fp32.replace(fp32)
    return model_dir / ONNX_FILES[quantize]

"""Exporting a model directory to ONNX (fp32), and quantising it to int8, beside its weights.

The steps are separate functions so that ``benchmarks/onnx_variants.py`` can compare them:

1. ``trace_fp32``: PyTorch to ONNX, dynamic batch and sequence.
2. ``fuse_transformer`` (only with ``fuse=True``): ONNX Runtime's transformer optimizer turns
   each layer's attention into one ``Attention`` node, residual Add + LayerNorm into
   ``SkipLayerNormalization``, bias + GELU into ``BiasGelu`` and the embeddings into
   ``EmbedLayerNormalization``, with heads and width read from the model's config. The fused
   graph must give torch's logits, or the traced one is kept.
3. ``quantize_int8``: dynamic int8 quantisation, one scale per output channel (fused
   attention becomes ``QAttention``, the other matmuls ``MatMulInteger``).

Fusing is off by default: on the 2-core Xeon (AVX-512 VNNI) we measured, the pre-fused int8
graph ran 6% slower (CPU time, one thread, the context default) than the traced one, which
ONNX Runtime fuses its own way when it loads it, and fp32 gained nothing.
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AttentionInterface, PreTrainedModel

from inference.backends import ONNX_FILES
from inference.inputs import InputBuilder
from inference.model import load_model_dir

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Our own attention function, traced instead of transformers' eager one when fusing. It writes
# the graph ONNX Runtime's fusion recognises: scores divided (not multiplied) by sqrt(head size), then the
# additive mask, then softmax. transformers' version multiplies by the scale, and the fusion,
# looking for the mask's Mul, finds the scale's instead and fuses nothing.
ATTENTION = "claimlens_onnx"
FUSED_TOLERANCE = 1e-4  # max |logit difference| between the fused fp32 graph and torch
# Sentences and contexts of different lengths: a padded batch for tracing and for checking.
_TEXTS = ["Police said three men were arrested.", "He denied it.", "Short."]
_CONTEXTS = [
    None,
    "Rebels said they had captured the town, a claim the army rejected.",
    "The ministry spoke.",
]


def _attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) / (1.0 / scale)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, _attention)


class _Exportable(torch.nn.Module):
    """The model with an additive [batch, 1, 1, seq] mask built here, and logits as its one output.

    The mask is built here rather than by transformers' mask helper so that the graph has the
    classic Cast → Sub → Mul mask the fusion looks for, whatever transformers version traced it.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        keep = attention_mask[:, None, None, :].to(torch.float32)
        mask = (1.0 - keep) * torch.finfo(torch.float32).min
        return self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids).logits


def sample_inputs(builder: InputBuilder) -> dict[str, np.ndarray]:
    """A padded batch of sentences (with contexts, for a context model) of different lengths."""
    return builder.batch(builder(_TEXTS, _CONTEXTS))


def trace_fp32(
    model: PreTrainedModel, example: dict[str, np.ndarray], path: Path, attention: str = "eager"
) -> None:
    """Write ``model`` as an fp32 ONNX graph taking any batch size and sequence length.

    ``attention``: ``"eager"`` (plain MatMul/Softmax, which ONNX Runtime runs and quantises
    faster on a CPU than the graph traced from SDPA), or ``ATTENTION`` for ``fuse_transformer``.
    """
    previous = model.config._attn_implementation
    model.set_attn_implementation(attention)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow
            torch.onnx.export(
                _Exportable(model).eval(),
                tuple(torch.from_numpy(example[n]) for n in INPUTS),
                str(path),
                input_names=list(INPUTS),
                output_names=["logits"],
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in INPUTS}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    finally:
        model.set_attn_implementation(previous)
        model.eval()


def fuse_transformer(src: Path, dst: Path, config: Any) -> dict[str, int]:
    """Write ``src`` with ONNX Runtime's transformer fusions to ``dst``; the fused ops it made.

    Nothing is fused (and ``{}`` returned) for a model type the optimizer does not know.
    """
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    if config.model_type not in MODEL_TYPES:
        return {}
    optimized = optimize_model(
        str(src),
        model_type=config.model_type,
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=0,  # our fusions only: ONNX Runtime applies its own, per machine, at load
    )
    optimized.save_model_to_file(str(dst))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(src: Path, dst: Path, reduce_range: bool = False) -> None:
    """Dynamic int8 quantisation of ``src`` with one scale per weight column (output channel).

    One scale per weight matrix cost the context model 0.022 macro-F1 on the gold test split;
    per channel it lost nothing. ``reduce_range`` (7-bit weights) only matters on CPUs without
    VNNI, whose int8 instruction can saturate; ``benchmarks/onnx_variants.py`` measures it.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The fused ops come from ONNX Runtime's own domain, which ONNX's shape inference cannot
    # type; every tensor of this graph is fp32.
    options = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    with _quiet_root_logger():  # "consider pre-processing": the fusion step did it
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            extra_options=options,
        )


def max_logit_difference(path: Path, model: PreTrainedModel, inputs: dict[str, np.ndarray]) -> float:
    """The largest |logit difference| between an ONNX graph and the torch model on ``inputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: inputs[n] for n in INPUTS})[0]
    with torch.inference_mode():
        want = model(**{n: torch.from_numpy(inputs[n]) for n in INPUTS}).logits.numpy()
    return float(np.abs(got - want).max())


def export_onnx(model_dir: str | Path, quantize: str = "none", fuse: bool = False) -> Path:
    """Write ``model.onnx`` (and, for ``quantize="int8"``, ``model.int8.onnx``) into ``model_dir``.

    ``fuse=True`` applies ONNX Runtime's transformer fusions before quantising (see the
    module docstring for why it is off by default).

    >>> export_onnx("models/quickstart", quantize="int8")  # doctest: +SKIP
    PosixPath('models/quickstart/model.int8.onnx')
    """
    if quantize not in ONNX_FILES:
        raise ValueError(f"quantize must be one of {', '.join(ONNX_FILES)}, got {quantize!r}")
    model_dir = Path(model_dir)
    model, tokenizer, info = load_model_dir(model_dir)
    example = sample_inputs(InputBuilder(tokenizer, info.max_length, info.context))
    # Written under temporary names, then renamed: a crash leaves no half-written model file.
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "traced.onnx"
        trace_fp32(model, example, fp32, attention=ATTENTION if fuse else "eager")
        if fuse:
            fp32 = _fused_or_traced(model, example, fp32, Path(tmp) / "fused.onnx")
        if quantize == "int8":
            tmp_int8 = Path(tmp) / ONNX_FILES["int8"]
            quantize_int8(fp32, tmp_int8)
            tmp_int8.replace(model_dir / ONNX_FILES["int8"])
        fp32.replace(model_dir / ONNX_FILES["none"])
    return model_dir / ONNX_FILES[quantize]


def _fused_or_traced(
    model: PreTrainedModel, example: dict[str, np.ndarray], traced: Path, fused: Path
) -> Path:
    """The fused graph if the optimizer fused anything and it gives torch's logits, else ``traced``."""
    if not fuse_transformer(traced, fused, model.config):
        warnings.warn(f"ONNX Runtime fuses nothing in a {model.config.model_type!r} model", stacklevel=3)
        return traced
    difference = max_logit_difference(fused, model, example)
    if math.isfinite(difference) and difference <= FUSED_TOLERANCE:
        return fused
    warnings.warn(
        f"the fused ONNX graph differs from torch by {difference:.2g}; kept the traced one", stacklevel=3
    )
    return traced

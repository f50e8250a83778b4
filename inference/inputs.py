"""The one way a sentence becomes model input, and the one "previous sentence".

Training, ``predict``, ``analyze``, the CLI, the server, the MLflow pyfunc and batch
scoring all call these two, so that what a model reads when it learns and when it
serves cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Encoded:
    """One model input: token ids, segment ids, and whether the sentence itself was cut."""

    input_ids: list[int]
    token_type_ids: list[int]
    truncated: bool


@dataclass(frozen=True)
class Aligned:
    """An ``Encoded`` input and, per token, its segment (0 sentence, 1 context, None special)
    and its ``(start, end)`` character offsets into that segment's own text."""

    encoded: Encoded
    segments: list[int | None]
    offsets: list[tuple[int, int]]


class InputBuilder:
    """Builds model inputs from sentences and (for a context model) their contexts.

    A context model always reads a pair, ``[CLS] sentence [SEP] context [SEP]``, with an
    empty context for a document's first sentence. The context is trimmed from its far
    side (its beginning: the words furthest from the sentence), so the sentence is never
    cut unless it alone is longer than ``max_length``; ``truncated`` says when it was.

    >>> build = InputBuilder(tokenizer, max_length=128, context=True)  # doctest: +SKIP
    >>> build(["Police denied it."], ["Rebels said they took the town."])[0].truncated  # doctest: +SKIP
    False
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, context: bool) -> None:
        # A private copy without truncation or padding: transformers switches both on the
        # shared backend per call, and our budget is worked out here, in tokens.
        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        self.max_length = max_length
        self.context = context
        self.pad_id = int(tokenizer.pad_token_id or 0)
        specials = tokenizer.num_special_tokens_to_add(pair=context)
        self.budget = max_length - specials  # tokens left for sentence plus context
        if self.budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for a sentence")

    def __call__(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None) -> list[Encoded]:
        """Encode ``texts`` (and, for a context model, ``contexts``: one per text, or None)."""
        return [a.encoded for a in self.aligned(texts, contexts)]

    def aligned(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None) -> list[Aligned]:
        """The same inputs as calling the builder, plus each token's segment and character offsets.

        >>> a = InputBuilder(tokenizer, 32, context=True).aligned(["They added."], ["NATO said."])  # doctest: +SKIP
        >>> a[0].segments[:3], a[0].offsets[1]  # doctest: +SKIP
        ([None, 0, 0], (0, 4))
        """
        if contexts is None:
            contexts = [None] * len(texts)
        if len(contexts) != len(texts):
            raise ValueError(f"got {len(contexts)} contexts for {len(texts)} texts")
        sentences = self._backend.encode_batch(list(texts), add_special_tokens=False)
        if not self.context:
            return [self._finish(s, None) for s in sentences]
        pairs = self._backend.encode_batch([c or "" for c in contexts], add_special_tokens=False)
        return [self._finish(s, c) for s, c in zip(sentences, pairs, strict=True)]

    def _finish(self, sentence: Encoding, context: Encoding | None) -> Aligned:
        truncated = len(sentence.ids) > self.budget
        if truncated:
            sentence.truncate(self.budget, direction="right")  # keep the sentence's beginning
        if context is not None:
            room = self.budget - len(sentence.ids)
            if room > 0:
                context.truncate(room, direction="left")  # keep the words nearest the sentence
            else:
                context = self._backend.encode("", add_special_tokens=False)
        done = self._backend.post_process(sentence, context, add_special_tokens=True)
        encoded = Encoded(list(done.ids), list(done.type_ids), truncated)
        # Segments from type ids and the special-token mask: not every tokenizer's template
        # post-processor fills in sequence ids.
        specials = done.special_tokens_mask
        segments = [None if sp else t for t, sp in zip(done.type_ids, specials, strict=True)]
        return Aligned(encoded, segments, [(a, b) for a, b in done.offsets])

    def batch(self, encoded: Sequence[Encoded]) -> dict[str, np.ndarray]:
        """Pad encoded inputs into the arrays a backend takes (padded to the longest)."""
        width = max(len(e.input_ids) for e in encoded)
        ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(encoded), width), dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            n = len(e.input_ids)
            ids[row, :n] = e.input_ids
            types[row, :n] = e.token_type_ids
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def doc_key(doc: object, where: str = "doc") -> str | None:
    """A document id as a string (``1`` and ``"1"`` are one document); None stays None."""
    if doc is None:
        return None
    if isinstance(doc, bool) or not isinstance(doc, str | int):
        raise ValueError(f"{where} must be a string or an integer, got {type(doc).__name__}")
    return str(doc)


def _position(idx: object, where: str) -> int:
    if isinstance(idx, bool):
        raise ValueError(f"{where} must be an integer, got a boolean")
    try:
        return int(str(idx).strip())
    except ValueError:
        raise ValueError(f"{where} must be an integer, got {idx!r}") from None


def previous_sentences(
    texts: Sequence[str],
    docs: Sequence[object] | None = None,
    idx: Sequence[object | None] | None = None,
) -> list[str | None]:
    """Each text's previous sentence within its document, in reading order.

    ``docs[i]`` names the document of ``texts[i]`` (None: a document of its own, so no
    context); without ``docs`` all texts are one document. ``idx[i]`` is the sentence's
    position in its document (default: input order); within one document either every
    row has an ``idx`` or none has. A duplicate position is a ``ValueError``.

    >>> previous_sentences(["b", "a", "c"], docs=[1, "1", None], idx=[1, 0, None])
    ['a', None, None]
    """
    n = len(texts)
    keys = (
        [doc_key(d, f"doc of row {i}") for i, d in enumerate(docs)]
        if docs is not None
        else ["" for _ in texts]
    )
    if len(keys) != n or (idx is not None and len(idx) != n):
        raise ValueError(f"texts, docs and idx must have the same length ({n})")
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(i)
    result: list[str | None] = [None] * n
    for key, rows in groups.items():
        for before, after in zip(*_in_reading_order(key, rows, idx), strict=True):
            result[after] = texts[before]
    return result


def _in_reading_order(
    key: str, rows: list[int], idx: Sequence[object | None] | None
) -> tuple[list[int], list[int]]:
    """(previous row, row) pairs of one document, as two aligned lists."""
    given = [idx[i] is not None for i in rows] if idx is not None else [False] * len(rows)
    if any(given) and not all(given):
        raise ValueError(f"document {key!r}: give idx on every row or on none")
    if any(given):
        assert idx is not None
        positions = {i: _position(idx[i], f"idx of row {i}") for i in rows}
        if len(set(positions.values())) != len(rows):
            raise ValueError(f"document {key!r}: the same idx appears twice")
        rows = sorted(rows, key=positions.__getitem__)
    return rows[:-1], rows[1:]

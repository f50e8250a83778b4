"""The one way a sentence becomes model input, and the one definition of its context.

:func:`context_windows` finds each sentence's neighbours in its document (reading order);
a model's :class:`Window` (in its folder's config) says how many of them it reads; and
:class:`InputBuilder` turns sentence and window into tokens. Training, ``predict``,
``analyze``, the CLI, the server, the MLflow pyfunc and batch scoring all call these, so
that what a model reads when it learns and when it serves cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

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
    """An ``Encoded`` input and, per token, its segment (0 sentence, 1 context before it, 2 the
    next sentence, None special) and its ``(start, end)`` character offsets into that segment's
    own text (for segment 1, the before-part as its :class:`Window` joined it)."""

    encoded: Encoded
    segments: list[int | None]
    offsets: list[tuple[int, int]]


MAX_BEFORE = 3  # previous sentences a window can hold
MAX_AFTER = 1  # next sentences a window can hold


@dataclass(frozen=True)
class Window:
    """How much of its document a context model reads around a sentence: the ``before``
    previous sentences (1 to 3) and the ``after`` next ones (0 or 1).

    >>> Window(2, 1).parts(Context(("A.", "B.", "C."), ("D.",)))
    ('B. C.', 'D.')
    """

    before: int = 1
    after: int = 0

    def __post_init__(self) -> None:
        for name, value, low, high in (("before", self.before, 1, MAX_BEFORE), ("after", self.after, 0, MAX_AFTER)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"context_{name} must be an integer from {low} to {high}, got {value!r}")

    def parts(self, context: ContextLike) -> tuple[str, str]:
        """The text this window reads before and after the sentence.

        A plain string is the before-part as given (the previous sentence(s), already joined);
        of a :class:`Context`, the nearest ``before`` sentences are joined with a space.
        """
        if context is None:
            return "", ""
        if isinstance(context, str):
            return context, ""
        after = " ".join(context.after[: self.after])
        return " ".join(context.before[-self.before :]), after


#: The widest window: what readers gather, so that every model finds its own window in it.
WIDEST = Window(MAX_BEFORE, MAX_AFTER)
#: The previous sentence alone: what every context model read before windows existed.
PREVIOUS = Window(1, 0)


@dataclass(frozen=True)
class Context:
    """A sentence's neighbours in its document, in reading order: ``before`` ends with the
    previous sentence and ``after`` starts with the next one (either may be empty, at a
    document's edges). A model reads as many of them as its :class:`Window` says.

    >>> Context(before=("Rebels said they took the town.",), after=("he said.",)).previous
    'Rebels said they took the town.'
    """

    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("before", "after"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"Context.{name} must be a tuple of sentences, got {type(value).__name__}")
            if not all(isinstance(s, str) for s in value):
                raise ValueError(f"Context.{name} must hold only strings")
            object.__setattr__(self, name, tuple(value))

    @property
    def previous(self) -> str | None:
        """The sentence just before (None for a document's first)."""
        return self.before[-1] if self.before else None

    @classmethod
    def of(cls, before: str | None, after: str | None = None) -> Context:
        """A context from text already cut to a window: ``before`` (the previous sentence(s),
        joined) and ``after`` (the next sentence); None or "" is none.

        >>> Context.of("A. B.", "C.")
        Context(before=('A. B.',), after=('C.',))
        """
        return cls((before,) if before else (), (after,) if after else ())


#: What the builder and ``predict`` take as one sentence's context: None (none), a string (the
#: previous sentence(s), joined), or a :class:`Context`.
ContextLike: TypeAlias = str | Context | None


class InputBuilder:
    """Builds model inputs from sentences and (for a context model) their contexts.

    A context model always reads a pair, ``[CLS] sentence [SEP] before [SEP]``, with an
    empty ``before`` for a document's first sentence; a window with ``after=1`` reads
    ``[CLS] sentence [SEP] before [SEP] after [SEP]`` (segment ids 0 for the sentence, 1 for
    all context). The sentence is never cut for context, only when it alone is longer than
    ``max_length`` (``truncated`` says so). What room is left goes to the context, each part
    trimmed from its far side: ``before`` loses its beginning, ``after`` its end. When both
    must shrink, each gets half the room (``before`` the larger half) and a part that needs
    less leaves the rest to the other, so the words furthest from the sentence go first.

    >>> build = InputBuilder(tokenizer, max_length=128, context=True)  # doctest: +SKIP
    >>> build(["Police denied it."], ["Rebels said they took the town."])[0].truncated  # doctest: +SKIP
    False
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_length: int, context: bool, window: Window = PREVIOUS
    ) -> None:
        if not context and window != PREVIOUS:
            raise ValueError(f"a context window ({window}) needs a context model (context=True)")
        # A private copy without truncation or padding: transformers switches both on the
        # shared backend per call, and our budget is worked out here, in tokens.
        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        self.max_length = max_length
        self.context = context
        self.window = window
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.sep_id = tokenizer.sep_token_id
        if window.after and self.sep_id is None:
            raise ValueError("a window with the next sentence needs a tokenizer with a separator token")
        # The after-part brings one separator of its own.
        specials = tokenizer.num_special_tokens_to_add(pair=context) + (1 if window.after else 0)
        self.budget = max_length - specials  # tokens left for sentence plus context
        if self.budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for a sentence")

    def __call__(self, texts: Sequence[str], contexts: Sequence[ContextLike] | None = None) -> list[Encoded]:
        """Encode ``texts`` (and, for a context model, ``contexts``: one per text, or None)."""
        return [a.encoded for a in self.aligned(texts, contexts)]

    def aligned(self, texts: Sequence[str], contexts: Sequence[ContextLike] | None = None) -> list[Aligned]:
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
            return [self._finish(s, None, None) for s in sentences]
        parts = [self.window.parts(c) for c in contexts]
        befores = self._backend.encode_batch([b for b, _ in parts], add_special_tokens=False)
        afters: list[Encoding | None] = (
            list(self._backend.encode_batch([a for _, a in parts], add_special_tokens=False))
            if self.window.after
            else [None] * len(texts)
        )
        return [self._finish(*three) for three in zip(sentences, befores, afters, strict=True)]

    def _finish(self, sentence: Encoding, before: Encoding | None, after: Encoding | None) -> Aligned:
        truncated = len(sentence.ids) > self.budget
        if truncated:
            sentence.truncate(self.budget, direction="right")  # keep the sentence's beginning
        room = self.budget - len(sentence.ids)
        keep_before, keep_after = share(room, len(before.ids) if before else 0, len(after.ids) if after else 0)
        if before is not None:
            before = self._cut(before, keep_before, "left")  # keep the words nearest the sentence
        done = self._backend.post_process(sentence, before, add_special_tokens=True)
        ids, types, offsets = list(done.ids), list(done.type_ids), [(a, b) for a, b in done.offsets]
        # Segments from type ids and the special-token mask: not every tokenizer's template
        # post-processor fills in sequence ids.
        segments: list[int | None] = [
            None if sp else t for t, sp in zip(done.type_ids, done.special_tokens_mask, strict=True)
        ]
        if after is not None:
            assert self.sep_id is not None
            after = self._cut(after, keep_after, "right")  # keep the words nearest the sentence
            n = len(after.ids)
            ids += [*after.ids, self.sep_id]
            types += [types[-1]] * (n + 1)  # the context's segment id (1 for BERT)
            segments += [2] * n + [None]
            offsets += [*((a, b) for a, b in after.offsets), (0, 0)]
        return Aligned(Encoded(ids, types, truncated), segments, offsets)

    def _cut(self, encoding: Encoding, keep: int, direction: str) -> Encoding:
        if keep >= len(encoding.ids):
            return encoding
        if keep <= 0:
            return self._backend.encode("", add_special_tokens=False)
        encoding.truncate(keep, direction=direction)
        return encoding

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


def share(room: int, before: int, after: int) -> tuple[int, int]:
    """How many tokens of the before- and after-part fit in ``room``: all of both if they fit;
    else half each (the before-part the larger half), a part that needs less leaving the rest
    to the other.

    >>> share(10, 3, 2), share(10, 20, 2), share(10, 20, 20), share(9, 2, 20)
    ((3, 2), (8, 2), (5, 5), (2, 7))
    """
    if before + after <= room:
        return before, after
    half = (room + 1) // 2
    if after <= room - half:
        return room - after, after
    if before <= half:
        return before, room - before
    return half, room - half


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


def context_windows(
    texts: Sequence[str],
    docs: Sequence[object] | None = None,
    idx: Sequence[object | None] | None = None,
    window: Window = WIDEST,
) -> list[Context]:
    """Each text's neighbours within its document, in reading order, as far as ``window`` reaches.

    ``docs[i]`` names the document of ``texts[i]`` (None: a document of its own, so no
    context); without ``docs`` all texts are one document. ``idx[i]`` is the sentence's
    position in its document (default: input order); within one document either every
    row has an ``idx`` or none has. A duplicate position is a ``ValueError``. The default,
    the widest window, serves every model: each reads only as much as its own window says.

    >>> context_windows(["b", "a", "c"], docs=[1, "1", 1], idx=[1, 0, 2], window=Window(1, 1))
    [Context(before=('a',), after=('c',)), Context(before=(), after=('b',)), Context(before=('b',), after=())]
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
    result = [Context() for _ in texts]
    for key, rows in groups.items():
        rows = _in_reading_order(key, rows, idx)
        ordered = [texts[i] for i in rows]
        for place, row in enumerate(rows):
            result[row] = Context(
                tuple(ordered[max(0, place - window.before) : place]),
                tuple(ordered[place + 1 : place + 1 + window.after]),
            )
    return result


def previous_sentences(
    texts: Sequence[str],
    docs: Sequence[object] | None = None,
    idx: Sequence[object | None] | None = None,
) -> list[str | None]:
    """Each text's previous sentence within its document: :func:`context_windows` with one
    sentence before and none after (the speaker tagger's context).

    >>> previous_sentences(["b", "a", "c"], docs=[1, "1", None], idx=[1, 0, None])
    ['a', None, None]
    """
    return [c.previous for c in context_windows(texts, docs, idx, PREVIOUS)]


def _in_reading_order(key: str, rows: list[int], idx: Sequence[object | None] | None) -> list[int]:
    """One document's rows in reading order: by ``idx`` where given, else as they came."""
    given = [idx[i] is not None for i in rows] if idx is not None else [False] * len(rows)
    if any(given) and not all(given):
        raise ValueError(f"document {key!r}: give idx on every row or on none")
    if any(given):
        assert idx is not None
        positions = {i: _position(idx[i], f"idx of row {i}") for i in rows}
        if len(set(positions.values())) != len(rows):
            raise ValueError(f"document {key!r}: the same idx appears twice")
        rows = sorted(rows, key=positions.__getitem__)
    return rows

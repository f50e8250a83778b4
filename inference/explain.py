"""Why this label: integrated gradients over the input embeddings, summed into words.

For one input and one label, the attribution of a token is how much its embedding moved the
label's (calibrated) probability along a straight path from a baseline, where every word is a
[PAD] embedding and [CLS]/[SEP] stay as they are, to the real input (Sundararajan et al. 2017,
``steps`` midpoint points). Word pieces are summed into words, mapped back to character spans of
the sentence or of the context the model read with it. The scores add up to about
``score - baseline_score``: positive words pushed the probability of the label up, negative down.
How far they miss is ``delta``; a model whose score jumps within one step of the path misses
most, and more ``steps`` close the gap (at a cost linear in ``steps``).

It needs gradients, so it runs the PyTorch weights whatever backend serves the predictions.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from inference.inputs import Aligned, InputBuilder
from inference.model import ModelInfo

STEPS = 20
SEGMENTS = {0: "sentence", 1: "context"}


@dataclass(frozen=True)
class Span:
    """A word the model read: where it is (``segment``'s own text ``[start:end]``) and its score."""

    segment: str
    start: int
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class Explanation:
    """The words behind one label, in reading order (sentence first, then context).

    ``score`` is the label's probability from the PyTorch weights and ``baseline_score`` the
    same with every word blanked; ``context_share`` is the context's part of all attribution
    (by absolute value; 0 for a model without context or a sentence without one); ``delta`` is
    the sum of all attributions minus ``score - baseline_score`` (0 for exact integration).
    """

    label: str
    score: float
    baseline_score: float
    context_share: float
    delta: float
    spans: tuple[Span, ...]
    method: str = "integrated_gradients"
    steps: int = STEPS

    def top(self, k: int = 5) -> list[Span]:
        """The ``k`` words that raised the label's score most, highest first.

        >>> [s.text for s in explanation.top(2)]  # doctest: +SKIP
        ['denied', 'rejected']
        """
        return sorted((s for s in self.spans if s.score > 0), key=lambda s: -s.score)[:k]


class Explainer:
    """Integrated-gradients explanations from a PyTorch model; safe to call from several threads.

    >>> Explainer(model, tokenizer, info).explain(["Police denied it."], [None], ["denial"])[0].top(1)  # doctest: +SKIP
    [Span(segment='sentence', start=7, end=13, text='denied', score=0.41)]
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        info: ModelInfo,
        temperature: float = 1.0,
        steps: int = STEPS,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.model = model
        # A private builder (its own tokenizer copy): explaining never waits on predict's lock.
        self.inputs = InputBuilder(tokenizer, info.max_length, info.context)
        self.labels = info.labels
        self.temperature = temperature
        self.steps = steps
        self._token_types = "token_type_ids" in inspect.signature(model.forward).parameters
        self._lock = threading.Lock()

    def explain(
        self, texts: Sequence[str], contexts: Sequence[str | None], labels: Sequence[str]
    ) -> list[Explanation]:
        """One explanation per text, of ``labels[i]`` (usually the predicted label)."""
        if not len(texts) == len(contexts) == len(labels):
            raise ValueError(f"got {len(texts)} texts, {len(contexts)} contexts and {len(labels)} labels")
        unknown = sorted({label for label in labels if label not in self.labels})
        if unknown:
            raise ValueError(f"cannot explain unknown labels {unknown}; the model has {list(self.labels)}")
        with self._lock:
            aligned = self.inputs.aligned(texts, contexts)
            return [
                self._one(a, {0: text, 1: context or ""}, label)
                for a, text, context, label in zip(aligned, texts, contexts, labels, strict=True)
            ]

    def _one(self, aligned: Aligned, texts: dict[int, str], label: str) -> Explanation:
        attributions, score, baseline = self._integrated_gradients(aligned, self.labels.index(label))
        spans = tuple(_words(aligned, attributions, texts))
        total = sum(abs(s.score) for s in spans)
        in_context = sum(abs(s.score) for s in spans if s.segment == SEGMENTS[1])
        return Explanation(
            label=label,
            score=round(score, 6),
            baseline_score=round(baseline, 6),
            context_share=round(in_context / total, 6) if total else 0.0,
            delta=round(sum(attributions) - (score - baseline), 6),
            spans=spans,
            steps=self.steps,
        )

    def _integrated_gradients(self, aligned: Aligned, target: int) -> tuple[list[float], float, float]:
        """Per-token attributions, the label's probability at the input and at the baseline."""
        ids = torch.tensor([aligned.encoded.input_ids])
        embed = self.model.get_input_embeddings()
        special = torch.tensor([[s is None for s in aligned.segments]])
        if self.model.training:  # dropout would make the path noisy and the answer random
            self.model.eval()
        with torch.inference_mode(False), torch.enable_grad():
            with torch.no_grad():
                real = embed(ids)
                baseline = torch.where(
                    special[..., None], real, embed(torch.full_like(ids, self.inputs.pad_id))
                )
            alphas = (torch.arange(self.steps, dtype=real.dtype) + 0.5) / self.steps
            ends = torch.tensor([0.0, 1.0], dtype=real.dtype)
            # Rows: the midpoints of the path, then the baseline and the input themselves.
            path = baseline + torch.cat([alphas, ends])[:, None, None] * (real - baseline)
            path.requires_grad_(True)
            probs = torch.softmax(self._logits(path, aligned) / self.temperature, dim=-1)[:, target]
            (grads,) = torch.autograd.grad(probs[: self.steps].sum(), path)
        attributions = ((real - baseline)[0] * grads[: self.steps].mean(dim=0)).sum(dim=-1)
        probs = probs.detach()
        return attributions.tolist(), float(probs[-1]), float(probs[-2])

    def _logits(self, embeds: torch.Tensor, aligned: Aligned) -> torch.Tensor:
        rows, width = embeds.shape[0], embeds.shape[1]
        inputs = {"inputs_embeds": embeds, "attention_mask": torch.ones(rows, width, dtype=torch.long)}
        if self._token_types:
            inputs["token_type_ids"] = torch.tensor([aligned.encoded.token_type_ids]).expand(rows, width)
        return self.model(**inputs).logits.float()


def _joins(text: str, previous_end: int, start: int) -> bool:
    """Whether a token starting at ``start`` continues the word that ended at ``previous_end``:
    overlapping, or touching with letters or digits on both sides (a word piece, not a comma)."""
    if start < previous_end:
        return True
    return start == previous_end and text[start - 1 : start].isalnum() and text[start : start + 1].isalnum()


def _words(aligned: Aligned, attributions: list[float], texts: dict[int, str]) -> list[Span]:
    """Tokens grouped into words per segment, each word's span and summed attribution."""
    groups: list[list[int]] = []
    for i, segment in enumerate(aligned.segments):
        start, end = aligned.offsets[i]
        if segment is None or start == end:
            continue
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and aligned.segments[last] == segment
            and _joins(texts[segment], aligned.offsets[last][1], start)
        ):
            groups[-1].append(i)
        else:
            groups.append([i])
    spans = []
    for group in groups:
        segment = aligned.segments[group[0]]
        assert segment is not None
        start = aligned.offsets[group[0]][0]
        end = max(aligned.offsets[i][1] for i in group)
        score = sum(attributions[i] for i in group)
        spans.append(Span(SEGMENTS[segment], start, end, texts[segment][start:end], round(score, 6)))
    return spans

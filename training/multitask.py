"""Training-only auxiliary heads: attributed? disputing? official source?

The four labels fold three questions into one answer (with the precedence rule on
top). These heads ask them separately from the same pooled [CLS] vector, as a
regulariser aimed at the weakest pair, claim vs official_statement: the "official"
head is trained only on sentences whose source type the label reveals (claim: not
official, official_statement: official), so it must learn speaker type rather than
precedence. The heads are removed before saving, so a model directory stays a
plain sequence classifier that ``inference`` loads without knowing about them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from inference.labels import LABEL2ID

AUX_TASKS: tuple[str, ...] = ("attributed", "disputing", "official")
_HEAD = "aux_head"

_CLAIM, _DENIAL, _OFFICIAL, _OTHER = (LABEL2ID[k] for k in ("claim", "denial", "official_statement", "other"))


def attach_aux_head(model: nn.Module) -> None:
    """Give a BERT-style classifier one linear head per auxiliary task."""
    if not all(hasattr(model, part) for part in ("bert", "dropout", "classifier")):
        raise ValueError(f"auxiliary heads need a BERT sequence classifier, not {type(model).__name__}")
    model.add_module(_HEAD, nn.Linear(model.config.hidden_size, len(AUX_TASKS)))  # type: ignore[union-attr, arg-type]


def detach_aux_head(model: nn.Module) -> None:
    """Drop the auxiliary head (before saving); a model without one is left as it is."""
    if hasattr(model, _HEAD):
        delattr(model, _HEAD)


def forward_with_aux(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The main logits and the auxiliary logits from one encoder pass (a model with the head attached)."""
    pooled = model.dropout(model.bert(**batch).pooler_output)
    return model.classifier(pooled), getattr(model, _HEAD)(pooled)


def aux_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task 0/1 targets and a mask of where each target is known.

    >>> aux_targets(torch.tensor([0]))[0].tolist()  # a claim: attributed, not disputing, not official
    [[1.0, 0.0, 0.0]]
    """
    attributed = labels != _OTHER
    disputing = labels == _DENIAL
    official = labels == _OFFICIAL
    targets = torch.stack([attributed, disputing, official], dim=1).float()
    known = torch.ones_like(targets, dtype=torch.bool)
    # A denial's or an unattributed sentence's label says nothing about who the source is.
    known[:, 2] = (labels == _CLAIM) | (labels == _OFFICIAL)
    return targets, known


def aux_loss(aux_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the known targets."""
    targets, known = aux_targets(labels)
    losses = nn.functional.binary_cross_entropy_with_logits(aux_logits, targets, reduction="none")
    return losses[known].mean()

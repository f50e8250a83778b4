"""The student's loss: gold hard labels (cross-entropy) plus a teacher's soft labels (KL at a temperature).

    loss = (1 - alpha) * CE(gold)  +  alpha * T**2 * KL(softmax(log p / T) || softmax(z / T))

CE is the class-weighted cross-entropy the loop always used, over the rows with a gold label;
KL is averaged over the rows with a teacher target (a pool row that is also a gold train row
has both). The ``T**2`` keeps the soft term's gradients on the scale of the hard term's
whatever the temperature (Hinton et al., 2015). Without teacher targets the loss is exactly
the plain cross-entropy, op for op, so a training without distillation is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import DistillConfig

# The dataset column of teacher probabilities (LABELS order); a row of NO_SOFT has no teacher target.
SOFT = "soft_targets"
NO_SOFT = -1.0
# CrossEntropyLoss's ignore_index: the label of a pool row with no gold label.
NO_LABEL = -100
# The teacher file rounds probabilities; a floor keeps log(p) finite for one rounded to 0.
_MIN_PROB = 1e-12


def kl_term(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T**2 * KL(teacher_T || student_T)``, the mean over rows.

    The teacher file stores calibrated probabilities, not logits. ``log p`` is the teacher's
    logits up to a constant per row (``p = softmax(z)`` means ``log p = z - logsumexp(z)``), and
    a softmax ignores such a constant, so ``softmax(log p / T)`` is exactly the teacher softened
    at ``T``; dividing ``p`` itself by ``T`` would not be.

    >>> p = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    >>> float(kl_term(p.log(), p, 2.0)) < 1e-6
    True
    """
    teacher_log = F.log_softmax(teacher_probs.clamp_min(_MIN_PROB).log() / temperature, dim=-1)
    student_log = F.log_softmax(student_logits / temperature, dim=-1)
    kl = F.kl_div(student_log, teacher_log, reduction="batchmean", log_target=True)
    return kl * temperature**2


class StudentLoss(nn.Module):
    """The training loss: plain class-weighted CE, or CE plus the teacher's KL when given soft targets.

    >>> loss = StudentLoss(None, DistillConfig(soft_labels="p.jsonl", weight=0.5, temperature=2.0))
    >>> float(loss(torch.zeros(1, 4), torch.tensor([NO_LABEL]), torch.full((1, 4), 0.25))) < 1e-6
    True
    """

    def __init__(self, class_weights: torch.Tensor | None, distill: DistillConfig | None = None) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=class_weights)  # ignore_index is NO_LABEL (-100)
        self.alpha = distill.weight if distill else 0.0
        self.temperature = distill.temperature if distill else 1.0

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None = None
    ) -> torch.Tensor:
        if soft is None:
            return self.ce(logits, labels)
        hard = labels != NO_LABEL
        taught = (soft != NO_SOFT).all(dim=-1)
        loss = logits.new_zeros(())
        if hard.any():  # a batch of pool rows alone has no gold term (CE over nothing is NaN)
            loss = loss + (1 - self.alpha) * self.ce(logits, labels)
        if taught.any():
            loss = loss + self.alpha * kl_term(logits[taught], soft[taught], self.temperature)
        return loss

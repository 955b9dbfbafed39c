"""Knowledge distillation (Hinton et al. 2015).

loss = lam * CE(z_s, y) + (1 - lam) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

The T^2 factor keeps the soft term's gradient scale independent of T. ``lam = 1`` is plain
cross-entropy; the teacher is usually the uncompressed model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
            targets: torch.Tensor, T: float = 4.0, lam: float = 0.5) -> torch.Tensor:
    """Distillation loss averaged over the batch (``teacher_logits=None``: plain CE)."""
    hard = F.cross_entropy(student_logits, targets)
    if teacher_logits is None or lam >= 1.0:
        return hard
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    log_ps = F.log_softmax(student_logits / T, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / T, dim=1)
    # KL(p_t || p_s) = sum p_t (log p_t - log p_s), mean over the batch
    soft = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()
    return lam * hard + (1.0 - lam) * T * T * soft


class DistillLoss:
    """``kd_loss`` with fixed T and lambda: ``loss(student, teacher, targets)``."""

    def __init__(self, T: float = 4.0, lam: float = 0.5) -> None:
        self.T, self.lam = float(T), float(lam)

    def __call__(self, student_logits, teacher_logits, targets):
        return kd_loss(student_logits, teacher_logits, targets, self.T, self.lam)

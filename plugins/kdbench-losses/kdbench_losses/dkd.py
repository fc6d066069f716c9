"""Decoupled knowledge distillation (Zhao et al., CVPR 2022, arXiv 2203.08679)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses import DistillationLoss, LossShapes
from kdbench.models.backbone import Features


def dkd_parts(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example TCKD and NCKD (without the T² factor), computed in log space.

    With p = softmax(z / T) and t the target class:

    - TCKD = KL(b_teacher ‖ b_student), b = [p_t, 1 - p_t] the binary target/non-target split;
    - NCKD = KL(p̂_teacher ‖ p̂_student), p̂_i = p_i / (1 - p_t) over the classes i ≠ t.

    Together they decompose Hinton's KD exactly: KL(p_T ‖ p_S) = TCKD + (1 - p_T,t) · NCKD.
    """
    z_s = student_logits.float() / temperature
    z_t = teacher_logits.float() / temperature
    is_target = F.one_hot(target, z_s.shape[-1]).bool()

    def split(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_all = torch.logsumexp(z, dim=-1)
        others = z.masked_fill(is_target, float("-inf"))
        log_others = torch.logsumexp(others, dim=-1)
        log_binary = torch.stack([z[is_target] - log_all, log_others - log_all], dim=-1)
        log_hat = others - log_others.unsqueeze(-1)  # -inf at the target class
        return log_binary, log_hat

    log_b_s, log_hat_s = split(z_s)
    log_b_t, log_hat_t = split(z_t)
    tckd = (log_b_t.exp() * (log_b_t - log_b_s)).sum(-1)
    diff = torch.where(is_target, torch.zeros_like(log_hat_t), log_hat_t - log_hat_s)
    nckd = (log_hat_t.exp() * diff).sum(-1)
    return tckd, nckd


class DKDLoss(DistillationLoss):
    """DKD: T² · (α · TCKD + β · NCKD), the KD loss split into its target-class and
    non-target-class parts with the second re-weighted (Zhao et al., CVPR 2022).

    ``TCKD = KL([p_t, 1 - p_t]_teacher ‖ [p_t, 1 - p_t]_student)`` with ``p = softmax(z/T)`` and
    ``t`` the target class; ``NCKD = KL(p̂_teacher ‖ p̂_student)`` with ``p̂`` the softened
    distribution renormalised over the classes other than ``t``; both averaged over the
    batch. Defaults α=1, β=8, T=4 (the paper's CIFAR-100 setting; ImageNet uses β=0.5).

    The target class is the label. Unlabelled images (label -1, the protocols' transfer set)
    take the teacher's top-1 class as their target with ``unlabelled="teacher"`` (default;
    an extension so DKD can use the transfer set as KD does) or are left out with
    ``unlabelled="ignore"``. DKD's linear warm-up of the loss weight is not reproduced (the
    training loop warms the learning rate up instead).
    """

    name = "dkd"
    # labels are read but not declared: declaring them would hand the loss only the
    # labelled part of a batch, and the transfer set's images are wanted here
    requires = frozenset({"student.logits", "teacher.logits"})

    def __init__(
        self,
        shapes: LossShapes,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        unlabelled: str = "teacher",
    ) -> None:
        super().__init__(shapes)
        if temperature <= 0:
            raise ValueError(f"dkd: temperature must be positive, got {temperature}")
        if unlabelled not in ("teacher", "ignore"):
            raise ValueError(f"dkd: unlabelled is 'teacher' or 'ignore', not {unlabelled!r}")
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), float(temperature)
        self.unlabelled = unlabelled

    def forward(
        self, student: Features, teacher: Features | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        s, t = student.logits, teacher.logits
        if labels is None:
            labels = torch.full((s.shape[0],), -1, dtype=torch.long, device=s.device)
        labelled = labels >= 0
        if self.unlabelled == "teacher":
            target = torch.where(labelled, labels, t.argmax(-1))
        else:
            if not bool(labelled.any()):
                return s.sum() * 0.0
            s, t, target = s[labelled], t[labelled], labels[labelled]
        tckd, nckd = dkd_parts(s, t, target, self.temperature)
        loss = self.alpha * tckd.mean() + self.beta * nckd.mean()
        return loss * self.temperature**2

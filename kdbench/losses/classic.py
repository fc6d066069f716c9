"""The classic objectives: cross-entropy on labels, Hinton's KD, FitNets feature regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses.base import DistillationLoss, LossShapes
from kdbench.models.backbone import Features


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float):
    """T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (Hinton et al., 2015)."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t


class CrossEntropy(DistillationLoss):
    """Cross-entropy of the student's logits against the labels."""

    name = "ce"
    requires = frozenset({"labels", "student.logits"})

    def __init__(self, shapes: LossShapes, label_smoothing: float = 0.0) -> None:
        super().__init__(shapes)
        self.label_smoothing = label_smoothing

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor | None):
        return F.cross_entropy(student.logits, labels, label_smoothing=self.label_smoothing)


class HintonKD(DistillationLoss):
    """Hinton KD: T² · KL between temperature-softened teacher and student predictions."""

    name = "kd"
    requires = frozenset({"student.logits", "teacher.logits"})

    def __init__(self, shapes: LossShapes, temperature: float = 4.0) -> None:
        super().__init__(shapes)
        if temperature <= 0:
            raise ValueError(f"kd: temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor | None):
        return kd_kl(student.logits, teacher.logits, self.temperature)


class FitNets(DistillationLoss):
    """FitNets: regress the teacher's features from the student's through a learned
    projector (MSE); on pooled embeddings (default) or on the token maps."""

    name = "fitnets"
    requires = frozenset({"student.pooled", "teacher.pooled"})

    def __init__(self, shapes: LossShapes, on: str = "pooled") -> None:
        if on not in ("pooled", "tokens"):
            raise ValueError(f"fitnets: 'on' must be 'pooled' or 'tokens', not {on!r}")
        self.on = on
        self.requires = frozenset({f"student.{on}", f"teacher.{on}"})
        super().__init__(shapes)
        if shapes.teacher_dim is None:
            raise ValueError("fitnets needs a teacher")
        if on == "pooled":
            self.projector: nn.Module = nn.Linear(shapes.student_dim, shapes.teacher_dim)
        else:
            self.projector = nn.Conv2d(shapes.student_dim, shapes.teacher_dim, kernel_size=1)

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor | None):
        if self.on == "pooled":
            return F.mse_loss(self.projector(student.pooled), teacher.pooled)
        s = self.projector(student.tokens)
        t = teacher.tokens
        if s.shape[-2:] != t.shape[-2:]:
            s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
        return F.mse_loss(s, t)

"""Feature norm-and-direction regularisation, the "ND" loss of KD++ (Wang et al.,
"Improving Knowledge Distillation via Regularizing Feature Norm and Direction", 2023,
arXiv 2305.17007)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses import DistillationLoss, LossShapes
from kdbench.models.backbone import Features


def nd_loss(
    student: torch.Tensor, teacher: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """``mean_i 1 - <s_i, c_{y_i} / ||c_{y_i}||> / max(||s_i||, ||t_i||)``.

    ``s`` the student embedding (in the teacher's width), ``t`` the teacher embedding, ``c_y``
    the teacher's class-mean embedding of the label. The dot product with the unit class
    centre pulls the student's *direction* towards it; dividing by the larger of the two
    norms keeps rewarding a larger student *norm* until it reaches the teacher's.
    """
    unit = F.normalize(centers[labels], dim=-1)
    largest = torch.maximum(student.norm(dim=-1), teacher.norm(dim=-1)).clamp_min(1e-12)
    return (1 - (student * unit).sum(-1) / largest).mean()


class NDLoss(DistillationLoss):
    """KD++'s ND loss on pooled embeddings: align the student's embedding with the teacher's
    class-mean direction and push its norm up to the teacher's:
    ``1 - <s, c_y/||c_y||> / max(||s||, ||t||)`` averaged over labelled images.

    The paper reads the class means from a table computed once over the training set
    with the teacher. A loss sees batches, so here they are running sums of the teacher's
    (frozen) embeddings per class, accumulated in training mode; after one epoch over the
    labelled set they are exactly the training-set class means. When the widths differ, the
    student embedding goes through a learned linear projector first (as the paper's
    ``EmbTrans``); the projector is discarded after training.
    """

    name = "nd"
    requires = frozenset({"labels", "student.pooled", "teacher.pooled"})

    def __init__(self, shapes: LossShapes) -> None:
        super().__init__(shapes)
        if shapes.teacher_dim is None:
            raise ValueError("nd needs a teacher")
        width = shapes.teacher_dim
        self.projector: nn.Module = (
            nn.Identity() if shapes.student_dim == width else nn.Linear(shapes.student_dim, width)
        )
        self.register_buffer("center_sum", torch.zeros(shapes.num_classes, width))
        self.register_buffer("center_count", torch.zeros(shapes.num_classes))

    @torch.no_grad()
    def observe(self, teacher: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of teacher embeddings to the per-class running sums."""
        self.center_sum.index_add_(0, labels, teacher.float())
        self.center_count.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float))

    def centers(self) -> torch.Tensor:
        return self.center_sum / self.center_count.clamp_min(1).unsqueeze(-1)

    def forward(
        self, student: Features, teacher: Features | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        t = teacher.pooled.float()
        if self.training:
            self.observe(t, labels)
        return nd_loss(self.projector(student.pooled.float()), t, self.centers(), labels)

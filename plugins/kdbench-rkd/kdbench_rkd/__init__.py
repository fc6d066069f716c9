"""Relational knowledge distillation (Park et al., CVPR 2019) as a kdbench plugin.

RKD transfers the *structure* of the teacher's embedding space rather than its values:
the student's pairwise distances (RKD-D) and triplet angles (RKD-A) within a batch are
pushed towards the teacher's. Being relative, it needs no projector between widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.hookspecs import hookimpl
from kdbench.losses import DistillationLoss, LossShapes
from kdbench.methods import CE, LossTerm, Method, Recipe

__version__ = "0.1.0"


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``x``, divided by their mean off-diagonal
    value (RKD's normalisation, so teacher and student scales do not matter)."""
    d = torch.cdist(x, x)
    off = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return d / d[off].mean().clamp_min(1e-12)


def triplet_angles(x: torch.Tensor) -> torch.Tensor:
    """cos of the angle at ``j`` between ``i`` and ``k`` for every triplet (i, j, k)."""
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # e[j, i] = unit(x_i - x_j)
    return torch.bmm(e, e.transpose(1, 2))  # [j, i, k]


class RKDLoss(DistillationLoss):
    """RKD: smooth-L1 between normalised pairwise distances (weight 25) and between triplet
    angles (weight 50) of pooled student and teacher embeddings."""

    name = "rkd"
    requires = frozenset({"student.pooled", "teacher.pooled"})

    def __init__(
        self, shapes: LossShapes, distance_weight: float = 25.0, angle_weight: float = 50.0
    ) -> None:
        super().__init__(shapes)
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def forward(self, student, teacher, labels):
        s, t = student.pooled.float(), teacher.pooled.float()
        if s.shape[0] < 3:  # angles need triplets; a tiny last batch contributes nothing
            return s.sum() * 0.0
        loss = self.distance_weight * F.smooth_l1_loss(pairwise_distances(s), pairwise_distances(t))
        loss = loss + self.angle_weight * F.smooth_l1_loss(triplet_angles(s), triplet_angles(t))
        return loss


RKD = Method(
    "rkd",
    "Relational KD: cross-entropy plus matching of pairwise distances and angles (RKD-DA).",
    recipe=Recipe(losses=(CE, LossTerm("rkd")), teacher_mode="lp"),
    url="https://arxiv.org/abs/1904.05068",
)


@hookimpl
def kdbench_register_losses(register):
    register(RKDLoss, url="https://arxiv.org/abs/1904.05068")


@hookimpl
def kdbench_register_methods(register):
    register(RKD, url=RKD.url)

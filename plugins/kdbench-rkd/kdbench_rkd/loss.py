"""The RKD loss: torch code, imported only when a recipe uses ``rkd``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses import DistillationLoss, LossShapes


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

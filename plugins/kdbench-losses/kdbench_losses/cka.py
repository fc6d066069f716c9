"""A feature loss from centred kernel alignment: 1 - linear CKA between the student's and the
teacher's representations of a batch (Kornblith et al., ICML 2019, for CKA; used as a
distillation loss by e.g. Zhou et al., "Rethinking Centered Kernel Alignment in Knowledge
Distillation", IJCAI 2024, arXiv 2401.11824)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses import DistillationLoss, LossShapes
from kdbench.models.backbone import Features


def linear_cka(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Differentiable linear CKA of (n, p) and (n, q) features of the same n examples:
    ``||Yc^T Xc||_F² / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc``, ``Yc``.

    Computed through the n x n Gram matrices when n is smaller than the widths
    (``||Yc^T Xc||_F² = <Kx, Ky>_F`` with ``K = Xc Xc^T``), else through the feature
    covariances; both give the same number.
    """
    x = x.float() - x.float().mean(0, keepdim=True)
    y = y.float() - y.float().mean(0, keepdim=True)
    if x.shape[0] < min(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T
        cross, nx, ny = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        cross, nx, ny = (y.T @ x).pow(2).sum(), (x.T @ x).norm(), (y.T @ y).norm()
    return cross / (nx * ny).clamp_min(eps)


def flatten_tokens(student: torch.Tensor, teacher: torch.Tensor):
    """(B, D, h, w) maps to (B·h·w, D) rows, the student's resized to the teacher's grid."""
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(
            student, size=teacher.shape[-2:], mode="bilinear", align_corners=False
        )
    rows = lambda m: m.flatten(2).transpose(1, 2).reshape(-1, m.shape[1])  # noqa: E731
    return rows(student), rows(teacher)


class CKALoss(DistillationLoss):
    """``1 - CKA_linear(S, T)`` between the student's and the teacher's features of a batch.

    CKA compares the two representations' similarity structure, so it needs no projector
    between widths and ignores rotations and isotropic scale. ``on="pooled"`` (default)
    uses the embeddings (n = batch size); ``on="tokens"`` the final token maps, every token
    of the batch a row (the student's map resized to the teacher's grid).
    """

    name = "cka"
    requires = frozenset({"student.pooled", "teacher.pooled"})

    def __init__(self, shapes: LossShapes, on: str = "pooled") -> None:
        if on not in ("pooled", "tokens"):
            raise ValueError(f"cka: 'on' must be 'pooled' or 'tokens', not {on!r}")
        self.on = on
        self.requires = frozenset({f"student.{on}", f"teacher.{on}"})
        super().__init__(shapes)

    def forward(
        self, student: Features, teacher: Features | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        if self.on == "pooled":
            s, t = student.pooled, teacher.pooled
        else:
            s, t = flatten_tokens(student.tokens, teacher.tokens)
        if s.shape[0] < 2:  # CKA needs two examples; a one-image batch adds nothing
            return s.sum() * 0.0
        return 1 - linear_cka(s, t)

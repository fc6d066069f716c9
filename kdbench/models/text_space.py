"""Heads into a teacher's image–text space, for zero-shot scoring of a student.

:class:`TextSpaceStudent` puts a linear projection on a student backbone; its logits are
scaled cosines to the teacher's text embeddings of the class names (CLIP-style), so any
distillation loss that reads logits or pooled features trains it. :class:`TextSpaceTeacher`
gives the teacher's outputs in the same form. :func:`fit_linear_map` maps a frozen student's
embeddings into the joint space in closed form (the no-training reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models.backbone import Backbone, Features
from kdbench.models.image_text import ImageTextModel


class TextSpaceStudent(nn.Module):
    """A student backbone with a linear projection into the teacher's joint space; its
    logits are scaled cosines to the teacher's (frozen) text embeddings of the base-class
    names, CLIP-style. ``embed`` gives the joint-space embedding the protocol scores."""

    def __init__(
        self, backbone: Backbone, joint_dim: int, class_text: torch.Tensor, scale: float
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.embed_dim, joint_dim)
        self.register_buffer("class_text", F.normalize(class_text.float(), dim=-1), False)
        self.scale = float(scale)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.backbone(images)), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * self.embed(images) @ self.class_text.T

    def features(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        out = self.backbone.features(images, tokens=tokens, layers=layers)
        out.logits = self.scale * F.normalize(self.proj(out.pooled), dim=-1) @ self.class_text.T
        return out


class TextSpaceTeacher:
    """The teacher's outputs for a recipe: ``pooled`` its joint image embedding, ``logits``
    its scaled image–text cosines to the base-class names (what it predicts zero-shot)."""

    def __init__(self, teacher: ImageTextModel, class_text: torch.Tensor) -> None:
        self.teacher = teacher
        self.class_text = F.normalize(class_text.float(), dim=-1)

    def __call__(
        self, images: torch.Tensor, tokens: bool = False, layers: Sequence[int] = ()
    ) -> Features:
        out = self.teacher.features(images, tokens=tokens, layers=layers)
        text = self.class_text.to(out.pooled.device)
        out.logits = self.teacher.logit_scale * F.normalize(out.pooled, dim=-1) @ text.T
        return out


def fit_linear_map(x: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, ...]:
    """Closed-form ridge regression ``y ≈ x W + b`` (``ridge`` relative to the mean
    eigenvalue of the centred Gram matrix): weight (d, D) and bias (D,)."""
    x, y = x.double(), y.double()
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    lam = ridge * float(torch.trace(gram)) / gram.shape[0]
    weight = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), xc.T @ yc)
    return weight.float(), (my - mx @ weight).float()

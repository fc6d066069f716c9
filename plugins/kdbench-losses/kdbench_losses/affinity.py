"""Affinity mimicking in the style of TinyCLIP (Wu et al., ICCV 2023, arXiv 2309.12314)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses import DistillationLoss, LossShapes
from kdbench.models.backbone import Features


def affinity_logits(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cosine similarities between the rows of ``features`` divided by ``temperature``, with
    each row's similarity to itself removed (set to -inf)."""
    unit = F.normalize(features.float(), dim=-1)
    logits = unit @ unit.T / temperature
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    return logits.masked_fill(eye, float("-inf"))


def affinity_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``mean_i KL(softmax(A_t[i]) ‖ softmax(A_s[i]))`` over the rows of the image–image
    affinity matrices ``A = cos(x_i, x_j) / τ`` (j ≠ i)."""
    log_s = F.log_softmax(affinity_logits(student, temperature), dim=-1)
    log_t = F.log_softmax(affinity_logits(teacher, temperature), dim=-1)
    off = ~torch.eye(log_s.shape[0], dtype=torch.bool, device=log_s.device)
    kl = torch.where(off, log_t.exp() * (log_t - log_s), torch.zeros_like(log_s))
    return kl.sum(-1).mean()


class AffinityLoss(DistillationLoss):
    """TinyCLIP-style affinity mimicking, image–image: the student learns, for every image
    of a batch, the teacher's softmax distribution of affinities to the other images,
    ``mean_i KL(softmax_j(cos(t_i, t_j)/τ) ‖ softmax_j(cos(s_i, s_j)/τ))``, j ≠ i.

    TinyCLIP mimics image-to-text and text-to-image affinities of a CLIP pair. kdbench's
    loss interface hands losses image features only (the students have no text tower), so
    this loss mimics the image–image affinities alone. Working on similarities, it needs no
    projector between widths. The self-affinity (always the largest) is left out of each
    row. Soft cross-entropy, as TinyCLIP writes it, differs from this KL by the teacher's
    entropy, a constant: the gradients are the same. τ defaults to 0.1.
    """

    name = "affinity"
    requires = frozenset({"student.pooled", "teacher.pooled"})

    def __init__(self, shapes: LossShapes, temperature: float = 0.1) -> None:
        super().__init__(shapes)
        if temperature <= 0:
            raise ValueError(f"affinity: temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self, student: Features, teacher: Features | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        s, t = student.pooled, teacher.pooled
        if s.shape[0] < 3:  # a row needs at least two other images to be a distribution
            return s.sum() * 0.0
        return affinity_kl(s, t, self.temperature)

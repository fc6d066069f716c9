"""Similarity of representations."""

from __future__ import annotations

import torch

from kdbench.phases import in_phase


@in_phase("evaluation")
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment between two feature matrices of the same examples
    (Kornblith et al., 2019): ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with
    column-centred ``Xc`` (n x p) and ``Yc`` (n x q). 1 for identical representations up to
    rotation and isotropic scale; in [0, 1]."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka needs (n, p) and (n, q) matrices, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError("linear_cka needs at least two examples")
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if norm == 0:
        raise ValueError("linear_cka is undefined for a constant representation")
    return float(cross / norm)

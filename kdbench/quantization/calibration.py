"""The calibration set of static quantisation: a fixed, seeded subset of the training images,
so every method and seed is calibrated on the same images and the record can name them."""

from __future__ import annotations

import hashlib

import torch

from kdbench.seeding import torch_generator


def calibration_indices(n: int, size: int, seed: int) -> torch.Tensor:
    """``size`` distinct indices into ``n`` training images (all of them if fewer), drawn
    from ``seed`` alone and sorted: the same subset wherever it is asked for."""
    if n <= 0:
        raise ValueError("calibration needs at least one training image")
    if size <= 0:
        raise ValueError(f"calibration size must be positive, not {size}")
    order = torch.randperm(n, generator=torch_generator(seed, "calibration"))
    return order[: min(size, n)].sort().values


def indices_digest(indices: torch.Tensor) -> str:
    """sha256 of the calibration indices (the record's ``draws["calibration"]``)."""
    return hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest()

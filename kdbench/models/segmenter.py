"""Semantic segmentation on a backbone's token maps.

A :class:`~kdbench.models.heads.SegmentationHead` (BatchNorm + 1x1 conv, logits upsampled
bilinearly to the mask) reads either token maps computed once from a frozen backbone
(:func:`token_features`, trained through :class:`TokenHeadStep`) or a backbone that trains
with it (:class:`Segmenter`). Both train on :func:`segmentation_loss`, cross-entropy over
the pixels whose mask is not ``IGNORE_INDEX``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.metrics.segmentation import IGNORE_INDEX
from kdbench.models.backbone import Backbone
from kdbench.models.heads import SegmentationHead


def token_maps(backbone: Backbone, images: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """(N, D, h, w): the final token map, or the maps of ``layers`` concatenated along D
    (a CNN's coarser maps upsampled bilinearly to the finest grid among them first)."""
    f = backbone.features(images, tokens=not layers, layers=layers)
    if not layers:
        return f.tokens
    grid = max((tuple(m.shape[-2:]) for m in f.layers), key=lambda hw: hw[0] * hw[1])
    maps = [
        m
        if tuple(m.shape[-2:]) == grid
        else F.interpolate(m, size=grid, mode="bilinear", align_corners=False)
        for m in f.layers
    ]
    return torch.cat(maps, dim=1)


class TokenMaps(nn.Module):
    """:func:`token_maps` of ``backbone`` at ``layers`` as a module (images in, maps out):
    what static quantisation exports."""

    def __init__(self, backbone: Backbone, layers: Sequence[int]) -> None:
        super().__init__()
        self.backbone, self.layers = backbone, tuple(layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return token_maps(self.backbone, images, self.layers)


@torch.no_grad()
def token_features(
    backbone: Backbone,
    images: torch.Tensor,
    layers: Sequence[int],
    *,
    device: str,
    batch_size: int,
    progress: Callable[..., Any] | None = None,
    desc: str = "tokens",
) -> torch.Tensor:
    """Token maps (N, D, h, w) in float16 (the final tokens, or ``layers`` concatenated)."""
    backbone = backbone.to(device).eval()
    out: torch.Tensor | None = None
    starts: Any = range(0, images.shape[0], batch_size)
    if progress is not None:
        starts = progress(starts, desc=desc, total=-(-images.shape[0] // batch_size))
    for start in starts:
        chunk = token_maps(backbone, images[start : start + batch_size].to(device), layers)
        if out is None:
            out = torch.empty((images.shape[0], *chunk.shape[1:]), dtype=torch.float16)
        out[start : start + chunk.shape[0]] = chunk.to("cpu", torch.float16)
    if out is None:
        raise ValueError("no images to compute token maps of")
    return out


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the scored pixels (0, not NaN, when a batch has none)."""
    target = masks.long()
    total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


def new_head(in_dim: int, num_classes: int, seed: int) -> SegmentationHead:
    """A :class:`SegmentationHead` initialised from ``seed`` (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SegmentationHead(in_dim, num_classes)


class TokenHeadStep(nn.Module):
    """Training step of a head on cached token maps: ``(tokens, masks) -> loss``."""

    def __init__(self, head: SegmentationHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, tokens: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(self.head(tokens.float(), size=masks.shape[-2:]), masks)


class Segmenter(nn.Module):
    """A backbone and a segmentation head on its token maps (``layers`` as in
    :func:`token_maps`), trained together: ``forward(images, masks)`` is the loss."""

    def __init__(
        self, backbone: Backbone, head: SegmentationHead, layers: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.layers = tuple(layers)

    def logits(self, images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.head(token_maps(self.backbone, images, self.layers), size=tuple(size))

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(self.logits(images, masks.shape[-2:]), masks)

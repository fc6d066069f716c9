"""Task heads on top of backbone features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierHead(nn.Module):
    """A linear classifier on pooled embeddings (optionally several layers' pooled tokens)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)


class SegmentationHead(nn.Module):
    """BatchNorm + 1x1 conv on a token map, logits upsampled bilinearly to the mask size."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_dim)
        self.conv = nn.Conv2d(in_dim, num_classes, kernel_size=1)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        logits = self.conv(self.norm(tokens))
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

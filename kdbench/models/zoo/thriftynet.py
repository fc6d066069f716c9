"""A ThriftyNet-style recursive CNN, written from the description in Coiffier, Boukli Hacene
and Gripon, "ThriftyNets: Convolutional Neural Networks with Tiny Parameter Budget" (2020,
arXiv 2007.10106): almost every parameter is in ONE 3x3 convolution, applied again and
again.

The input goes through a 1x1 projection to ``filters`` channels (state ``x_0``). Step
``t = 1..T`` applies the shared convolution to the previous state, its own BatchNorm and a
ReLU, and makes the new state a learned weighted sum of that activation and the last
``history`` states (the paper's shortcut coefficients alpha)::

    a_t = relu(BN_t(conv(x_{t-1})))
    x_t = alpha_t[0] * a_t + sum_{i=1..history} alpha_t[i] * x_{t-i}

After the steps in ``pool_after``, the state and the remembered history are max-pooled 2x2
(downsampling at fixed steps). The embedding is the global max over the final map.

Choices the description leaves open, made here: BatchNorm before the activation; alpha
starts at [1, 1, 0, ...] (the activation plus an identity shortcut, a residual network's
start); states before ``x_0`` do not exist, so early steps sum over fewer of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models.backbone import Backbone
from kdbench.models.zoo import MapStudent, zoo_backbone
from kdbench.world.models import IMAGE_SIZE


class ThriftyStep(nn.Module):
    """What one step owns: its BatchNorm and its shortcut coefficients (the convolution is
    shared by all steps and lives in :class:`ThriftyNet`)."""

    def __init__(self, filters: int, history: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(filters)
        alpha = torch.zeros(history + 1)
        alpha[:2] = 1.0
        self.alpha = nn.Parameter(alpha)

    def forward(self, convolved: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """The new state from the convolved previous state and the history, newest first."""
        out = self.alpha[0] * F.relu(self.norm(convolved))
        for weight, state in zip(self.alpha[1:], states):
            out = out + weight * state
        return out


class ThriftyNet(MapStudent):
    """One 3x3 convolution applied ``steps`` times; ``blocks`` are the steps (what
    ``features(layers=...)`` indexes), each step's output its state after pooling."""

    def __init__(
        self,
        filters: int = 32,
        steps: int = 10,
        history: int = 3,
        pool_after: Sequence[int] = (1, 3),
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if not all(1 <= t <= steps for t in pool_after):
            raise ValueError(f"pool_after steps must lie in 1..{steps}, got {tuple(pool_after)}")
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        self.history = history
        self.pool_after = frozenset(int(t) for t in pool_after)
        self.project = nn.Conv2d(in_chans, filters, kernel_size=1, bias=False)
        self.conv = nn.Conv2d(filters, filters, kernel_size=3, padding=1, bias=False)
        self.blocks = nn.ModuleList(ThriftyStep(filters, history) for _ in range(steps))
        self.num_features = filters

    def run(self, x: torch.Tensor, take: set[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final state, and the states after the steps in ``take`` (0-based)."""
        x = self.project(x)
        states = [x]  # newest first, at most ``history`` of them
        taken = []
        for i, step in enumerate(self.blocks):
            x = step(self.conv(x), states)
            states = [x, *states][: self.history]
            if i + 1 in self.pool_after:
                states = [F.max_pool2d(s, 2) for s in states]
                x = states[0]
            if i in take:
                taken.append(x)
        return x, taken

    def units(self) -> Sequence[nn.Module]:
        return self.blocks

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x.amax((2, 3))


def shapes_thriftynet(
    weights: str | Path | None = None, pretrained: bool = True, img_size: int = IMAGE_SIZE
) -> Backbone:
    """ThriftyNet: one shared 3x3 convolution of 32 filters applied 10 times, history 3,
    max-pooling after steps 1 and 3 (8x8 map at 32 px)."""
    return zoo_backbone(ThriftyNet(), "shapes-thriftynet", weights, pretrained, img_size)

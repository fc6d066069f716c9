"""Parameters and FLOPs of one forward pass.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per
multiply-accumulate in matmuls, convolutions and fused attention (elementwise work such as
normalisation, activations and softmax is not counted). GMACs = GFLOPs / 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class FlopCount:
    """FLOPs of one forward at batch 1, in total and per operator."""

    flops: int
    by_op: dict[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        return self.flops / 2e9


def count_params(model: nn.Module) -> int:
    """Parameters of ``model`` (each shared tensor once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def count_flops(model: nn.Module, example: torch.Tensor) -> FlopCount:
    """FLOPs of ``model(example)`` per image (``example`` may hold several images)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    images = max(1, int(example.shape[0]))
    by_op = {str(op): int(n) // images for op, n in counter.get_flop_counts()["Global"].items()}
    return FlopCount(int(counter.get_total_flops()) // images, dict(sorted(by_op.items())))

"""DQA's per-layer quantiser: a learned attention over quantisers of several widths, with a
temperature schedule that ends on the lowest width."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdbench.quantization.training import (
    ActivationRange,
    LayerQuantiser,
    quantise_activation,
    quantise_weight,
)


def attention_weights(logits: torch.Tensor, progress: float, settings: Any) -> torch.Tensor:
    """The mix at training ``progress`` (0 to 1): ``softmax((logits + progress * bias *
    e_low) / tau)`` with ``tau`` falling geometrically over training, and the low-bit
    quantiser alone from ``settings.hard_from`` on."""
    low = torch.zeros_like(logits)
    low[-1] = 1.0
    if progress >= settings.hard_from:
        return low
    start, end = settings.temperature
    tau = start * (end / start) ** progress
    return torch.softmax((logits + progress * settings.bias * low) / tau, dim=0)


class AttentionQuantiser(LayerQuantiser):
    """One layer's weight and input quantised at every width of ``settings.bits`` and mixed
    by learned attention weights (one set per layer, shared by weight and input)."""

    def __init__(self, settings: Any, total_steps: int) -> None:
        super().__init__()
        self.settings, self.total_steps = settings, max(1, int(total_steps))
        self.logits = nn.Parameter(torch.zeros(len(settings.bits)))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.range = ActivationRange()

    @property
    def progress(self) -> float:
        return min(1.0, int(self.step) / self.total_steps)

    def mix(self) -> torch.Tensor:
        return attention_weights(self.logits, self.progress, self.settings)

    def weight(self, weight: torch.Tensor) -> torch.Tensor:
        mix = self.mix()
        per_channel = self.settings.per_channel
        return sum(
            a * quantise_weight(weight, b, per_channel) for a, b in zip(mix, self.settings.bits)
        )

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.step += 1
        low, high = self.range.update(x)
        mix = self.mix()
        return sum(
            a * quantise_activation(x, low, high, b) for a, b in zip(mix, self.settings.bits)
        )

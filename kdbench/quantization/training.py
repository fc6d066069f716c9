"""Fake quantisation while a student trains (quantisation-aware training).

A recipe's ``quantise`` (a :class:`TrainingQuantiser`) wraps every convolution and linear
layer of the student's backbone for the length of its training: the layer's weights and
its input pass through quantisers in the forward pass, gradients pass straight through
them (the straight-through estimator), and the wrappers come off afterwards, leaving the
plain layers with the trained fp32 weights. The student is then scored like any other; at
``--precision int<b>-sim`` it meets the same scheme it trained with.

The scheme matches the scoring precisions (:mod:`kdbench.quantization.ptq`): weights
symmetric per output channel, activations affine per tensor (their range a moving average
of batch minima and maxima). :class:`QuantAware` is plain QAT at one width; a plugin can
write another quantiser (``kdbench-dqa`` mixes several widths with learned attention) by
implementing :class:`TrainingQuantiser`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

RANGE_MOMENTUM = 0.1
"""Weight of a batch's minimum and maximum in an activation range's moving average."""


def quantise_weight(weight: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """``weight`` rounded to ``bits``-bit symmetric levels (one scale per output channel, or
    one for the tensor); the gradient passes straight through."""
    top = 2 ** (bits - 1) - 1
    if per_channel and weight.dim() > 1:
        reach = weight.detach().abs().flatten(1).amax(1).view(-1, *[1] * (weight.dim() - 1))
    else:
        reach = weight.detach().abs().amax()
    scale = reach.clamp_min(1e-8) / top
    levels = torch.clamp(torch.round(weight / scale), -top - 1, top) * scale
    return weight + (levels - weight).detach()


def quantise_activation(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int):
    """``x`` rounded to ``2**bits`` affine levels over ``[low, high]`` (zero exactly
    representable); the gradient passes straight through."""
    low, high = torch.clamp(low, max=0.0), torch.clamp(high, min=0.0)
    scale = (high - low).clamp_min(1e-8) / (2**bits - 1)
    zero = torch.round(-low / scale)
    levels = (torch.clamp(torch.round(x / scale) + zero, 0, 2**bits - 1) - zero) * scale
    return x + (levels - x).detach()


class LayerQuantiser(nn.Module):
    """How one wrapped layer's weight and input are quantised (one instance per layer)."""

    def weight(self, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ActivationRange(nn.Module):
    """A moving average of the minimum and maximum an input takes while training."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def update(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            low, high = x.detach().amin(), x.detach().amax()
            with torch.no_grad():
                m = torch.where(self.seen, torch.tensor(RANGE_MOMENTUM), torch.tensor(1.0))
                self.low.mul_(1 - m).add_(m * low)
                self.high.mul_(1 - m).add_(m * high)
                self.seen.fill_(True)
        return self.low, self.high


class FixedBits(LayerQuantiser):
    """Plain QAT: one width for weights and inputs."""

    def __init__(self, bits: int, per_channel: bool) -> None:
        super().__init__()
        self.bits, self.per_channel = bits, per_channel
        self.range = ActivationRange()

    def weight(self, weight: torch.Tensor) -> torch.Tensor:
        return quantise_weight(weight, self.bits, self.per_channel)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.range.update(x)
        return quantise_activation(x, low, high, self.bits)


class QuantisedLayer(nn.Module):
    """A convolution or linear layer whose weight and input pass through ``quantiser``."""

    def __init__(self, layer: nn.Module, quantiser: LayerQuantiser) -> None:
        super().__init__()
        self.layer, self.quantiser = layer, quantiser

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quantiser.activation(x)
        weight = self.quantiser.weight(self.layer.weight)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, self.layer.bias)
        return self.layer._conv_forward(x, weight, self.layer.bias)


def wrappable(module: nn.Module) -> bool:
    """Plain convolutions and linear layers (a subclass with its own forward is left alone)."""
    if isinstance(module, nn.Linear):
        return type(module).forward in (nn.Linear.forward,) or type(module).__name__ == "Linear"
    return isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward


@dataclass
class Attached:
    """Wrappers put on a model; :meth:`remove` puts the plain layers back."""

    model: nn.Module
    layers: list[tuple[nn.Module, str, QuantisedLayer]]

    @property
    def quantisers(self) -> list[LayerQuantiser]:
        return [wrapped.quantiser for _, _, wrapped in self.layers]

    def remove(self) -> None:
        for parent, name, wrapped in self.layers:
            setattr(parent, name, wrapped.layer)
        self.layers = []


def attach_quantisers(model: nn.Module, make: Callable[[], LayerQuantiser]) -> Attached:
    """Wrap every plain convolution and linear layer under ``model`` with a quantiser made
    by ``make`` (in module order)."""
    found = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if wrappable(child) and not isinstance(parent, QuantisedLayer)
    ]
    layers = []
    for parent, name, child in found:
        wrapped = QuantisedLayer(child, make())
        setattr(parent, name, wrapped)
        layers.append((parent, name, wrapped))
    return Attached(model, layers)


class TrainingQuantiser(Protocol):
    """What a recipe's ``quantise`` is: it names itself for records and cache keys and puts
    its quantisers on the student's backbone for ``total_steps`` training forwards."""

    def as_dict(self) -> dict[str, Any]:
        """Its settings, as the record and the cache key show them."""

    def attach(self, backbone: nn.Module, total_steps: int) -> Attached:
        """Wrap ``backbone``'s layers; the returned :class:`Attached` removes them."""

    def scored_at(self) -> str:
        """The precision its student is meant to be scored at, e.g. ``int4-sim``."""

"""Parameters and FLOPs of one forward pass.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per
multiply-accumulate in matmuls, convolutions and fused attention (elementwise work such as
normalisation, activations and softmax is not counted). GMACs = GFLOPs / 2.

Some torch releases (2.14 and older) have no formula for the CPU kernel of fused attention
(``aten._scaled_dot_product_flash_attention_for_cpu``) and would count every fused attention
call as 0 FLOPs; :func:`count_flops` supplies torch's own attention formula for it there, so
the count does not depend on the torch version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils import flop_counter
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


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's formula for fused attention (2 FLOPs per multiply-accumulate of QK^T and AV)."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def missing_formulas() -> dict[object, object]:
    """Formulas this torch lacks for operators kdbench's models run on the CPU."""
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is None:
        return {}
    known = {str(op) for op in flop_counter.flop_registry}
    if str(cpu_attention) in known or str(cpu_attention.default) in known:
        return {}
    return {cpu_attention: _attention_flops}


def count_flops(model: nn.Module, example: torch.Tensor) -> FlopCount:
    """FLOPs of ``model(example)`` per image (``example`` may hold several images)."""
    counter_mode = FlopCounterMode(display=False, custom_mapping=missing_formulas())
    with torch.no_grad(), counter_mode as counter:
        model(example)
    images = max(1, int(example.shape[0]))
    by_op = {str(op): int(n) // images for op, n in counter.get_flop_counts()["Global"].items()}
    return FlopCount(int(counter.get_total_flops()) // images, dict(sorted(by_op.items())))

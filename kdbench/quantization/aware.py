"""Quantisation-aware training settings a recipe names (``Recipe.quantise``), free of
torch so that method definitions import cheaply; the wrappers they put on a student are in
:mod:`kdbench.quantization.training`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QuantAware:
    """Plain QAT: fake-quantised weights and inputs at ``bits`` all through training."""

    bits: int = 4
    per_channel: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "qat", "bits": self.bits, "per_channel": self.per_channel}

    def attach(self, backbone: Any, total_steps: int) -> Any:
        from kdbench.quantization.training import FixedBits, attach_quantisers

        return attach_quantisers(backbone, lambda: FixedBits(self.bits, self.per_channel))

    def scored_at(self) -> str:
        return f"int{self.bits}{'' if self.per_channel else '-tensor'}" + (
            "" if self.bits == 8 else "-sim"
        )

"""DQA, DNN quantisation with attention, as a kdbench plugin.

Low-bit quantisation is relaxed, while the student trains, into a learnable
attention-weighted mix of high-, medium- and low-bit quantisers; a temperature schedule
converges the mix to the low-bit quantiser. This module names things (torch-free, so
``kdbench ls`` stays fast); the quantisers are in :mod:`kdbench_dqa.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdbench.hookspecs import hookimpl
from kdbench.methods import CE, LossTerm, Method, Recipe

__version__ = "0.1.0"

URL = "https://arxiv.org/abs/2103.13322"


@dataclass(frozen=True)
class AttentionQuantAware:
    """DQA's training quantiser (a :class:`kdbench.quantization.training.TrainingQuantiser`):
    quantisers at ``bits`` (high to low), a temperature falling from ``temperature[0]`` to
    ``temperature[1]``, a pull of ``bias`` towards the low-bit one and, from ``hard_from`` of
    training on, the low-bit quantiser alone."""

    bits: tuple[int, ...] = (16, 8, 4)
    temperature: tuple[float, float] = (1.0, 0.01)
    bias: float = 4.0
    hard_from: float = 0.9
    per_channel: bool = True

    def __post_init__(self) -> None:
        if len(self.bits) < 2 or list(self.bits) != sorted(self.bits, reverse=True):
            raise ValueError(f"DQA needs two or more widths, high to low, not {self.bits}")
        if not 0 < self.hard_from <= 1:
            raise ValueError("hard_from is a fraction of training in (0, 1]")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "dqa",
            "bits": list(self.bits),
            "temperature": list(self.temperature),
            "bias": self.bias,
            "hard_from": self.hard_from,
            "per_channel": self.per_channel,
        }

    def attach(self, backbone: Any, total_steps: int) -> Any:
        from kdbench.quantization.training import attach_quantisers
        from kdbench_dqa.attention import AttentionQuantiser

        return attach_quantisers(backbone, lambda: AttentionQuantiser(self, total_steps))

    def scored_at(self) -> str:
        return f"int{self.bits[-1]}-sim"


def _kd_with(quantise: AttentionQuantAware) -> Recipe:
    return Recipe(
        losses=(CE, LossTerm("kd", 1.0, {"temperature": 4.0})),
        teacher_mode="lp",
        quantise=quantise,
    )


DQA = Method(
    "dqa",
    "DQA: Hinton KD (T=4) through an attention-weighted mix of 16-, 8- and 4-bit quantisers "
    "converging to 4 bits; score it with --precision int4-sim.",
    recipe=_kd_with(AttentionQuantAware(bits=(16, 8, 4))),
    url=URL,
)
DQA_2BIT = Method(
    "dqa-2bit",
    "DQA at 2 bits: Hinton KD (T=4) through an attention-weighted mix of 8-, 4- and 2-bit "
    "quantisers converging to 2 bits; score it with --precision int2-sim.",
    recipe=_kd_with(AttentionQuantAware(bits=(8, 4, 2))),
    url=URL,
)


@hookimpl
def kdbench_register_methods(register):
    for method in (DQA, DQA_2BIT):
        register(method, name=method.name, description=method.description, url=method.url)

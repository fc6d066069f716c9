"""The precisions a student can be scored at, parsed from their names.

- ``fp32``: the model as trained (every protocol's default; its records do not name it);
- ``int8``: static post-training quantisation with int8 weights (per output channel,
  symmetric) and uint8 activations (per tensor, affine), which x86 CPUs run with oneDNN's
  int8 kernels; ``int8-tensor``: one weight scale per layer instead of one per channel;
- ``int<b>-sim`` (``b`` from 2 to 16, optionally ``int<b>-tensor-sim``): the same scheme at
  ``b`` bits, *simulated* with quantise/dequantise pairs in fp32 arithmetic (no kernel runs
  those widths), and labelled simulated wherever it is shown.

Anything else (``int4`` without ``-sim``, ``fp16``) is refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kdbench.errors import ConfigError

FP32 = "fp32"
MIN_BITS, MAX_BITS = 2, 16
KERNEL_BITS = (8,)
"""Integer widths with real kernels (x86 oneDNN through inductor): the others are simulated."""

_NAME = re.compile(r"^int(\d+)(-tensor)?(-sim)?$")


class UnsupportedPrecision(ConfigError):
    """A precision name kdbench cannot score, with the reason."""


@dataclass(frozen=True)
class Precision:
    """One scoring precision."""

    name: str
    bits: int | None
    """Integer width of weights and activations; ``None`` for fp32."""
    per_channel: bool = True
    """One weight scale per output channel (else one per layer)."""
    simulated: bool = False
    """Fake-quantised in fp32 arithmetic: accuracy is real, no kernel runs it."""

    @property
    def is_fp32(self) -> bool:
        return self.bits is None

    @property
    def label(self) -> str:
        """How tables say it: ``int8 (PTQ)``, ``int4 (simulated)``."""
        if self.is_fp32:
            return FP32
        kind = "simulated" if self.simulated else "PTQ"
        scope = "" if self.per_channel else ", per-tensor weights"
        return f"int{self.bits} ({kind}{scope})"

    def bit_config(self) -> dict[str, Any]:
        """What the record says about the arithmetic."""
        if self.is_fp32:
            return {"precision": FP32}
        assert self.bits is not None
        return {
            "precision": self.name,
            "weights": {
                "bits": self.bits,
                "scheme": "symmetric",
                "granularity": "per-channel" if self.per_channel else "per-tensor",
            },
            "activations": {"bits": self.bits, "scheme": "affine", "granularity": "per-tensor"},
            "simulated": self.simulated,
            "quantised_ops": "those the x86 inductor quantiser annotates (conv, linear, "
            "and the adds, pools and concatenations between them)",
        }


def parse_precision(name: str) -> Precision:
    """The :class:`Precision` called ``name``; :class:`UnsupportedPrecision` says why not."""
    text = str(name).strip().lower()
    if text == FP32:
        return Precision(FP32, None)
    if text in ("fp16", "bf16"):
        raise UnsupportedPrecision(
            f"precision {text!r} is not a scoring precision: the device protocol times it "
            "(its `precisions` config); scoring takes fp32, int8, int8-tensor or int<b>-sim"
        )
    match = _NAME.match(text)
    if match is None:
        raise UnsupportedPrecision(
            f"unknown precision {name!r}; choose fp32, int8, int8-tensor or int<b>-sim "
            f"(b from {MIN_BITS} to {MAX_BITS}, e.g. int4-sim)"
        )
    bits, tensor, sim = int(match[1]), bool(match[2]), bool(match[3])
    if not MIN_BITS <= bits <= MAX_BITS:
        raise UnsupportedPrecision(
            f"precision {name!r}: {bits} bits is outside {MIN_BITS}-{MAX_BITS}"
        )
    if not sim and bits not in KERNEL_BITS:
        raise UnsupportedPrecision(
            f"precision {name!r}: no CPU kernel runs int{bits} arithmetic (x86 oneDNN has "
            f"int8 only); score it simulated as int{bits}{'-tensor' if tensor else ''}-sim"
        )
    return Precision(text, bits, per_channel=not tensor, simulated=sim)


def parse_precisions(values: str | list[str] | tuple[str, ...] | None) -> list[Precision]:
    """``"fp32,int8"`` or ``["int8", "int4-sim"]`` -> checked precisions without repeats, in
    the order given; none given: fp32 alone."""
    if values is None:
        return [Precision(FP32, None)]
    items = re.split(r"[,\s]+", values) if isinstance(values, str) else list(values)
    names = list(dict.fromkeys(str(v).strip().lower() for v in items if str(v).strip()))
    return [parse_precision(n) for n in names] or [Precision(FP32, None)]


def precision_of(config: dict[str, Any]) -> Precision:
    """The precision a protocol config scores at (its ``precision`` section; fp32 without)."""
    section = config.get("precision")
    return parse_precision(section["name"]) if section else Precision(FP32, None)

"""The device protocol's timing of a statically quantised student: the model a scoring
protocol's ``--precision`` unit scores (:mod:`kdbench.quantization.ptq`), lowered by
inductor to real int8 kernels, against the fp32 model through the same export and
compiler (so the gain is the quantisation's, not the compiler's).

A precision with no kernels here (a simulated width, a device without the x86 int8 path,
a graph inductor did not lower to int8 kernels) gives ``null`` figures with the reason:
an emulated time is never reported as a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.device.memory import peak_memory
from kdbench.device.timing import Tier, latency_stats, synchroniser, time_queries
from kdbench.quantization.precisions import parse_precision
from kdbench.results import Metric, MetricSpec

BOOTSTRAP = 2000
"""Resamples of the speed-up's confidence interval."""

QUANT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "quant_latency_p50_ms",
        False,
        "ms",
        description="--precision units: median batch-1 latency of the statically quantised "
        "model on real int8 kernels (inductor, x86 oneDNN).",
    ),
    MetricSpec(
        "quant_fp32_latency_p50_ms",
        False,
        "ms",
        description="--precision units: median batch-1 latency of the fp32 model through the "
        "same export and compiler (the reference of the speed-up).",
    ),
    MetricSpec(
        "quant_speedup",
        True,
        "x",
        description="--precision units: fp32 median latency / quantised median latency, same "
        "compiler, with a bootstrap 95% CI.",
    ),
    MetricSpec(
        "quant_peak_memory_mb",
        False,
        "MB",
        description="--precision units: weights + input + activation peak of one batch-1 "
        "forward of the quantised model (tensors; 10^6 bytes).",
    ),
    MetricSpec(
        "weight_mb",
        False,
        "MB",
        description="--precision units: weight bytes at their stored width (10^6 bytes).",
    ),
)
SPECS = {spec.name: spec for spec in QUANT_METRICS}


@dataclass
class QuantisedTiming:
    """The quantised model's figures, or why there are none."""

    precision: str
    reason: str | None = None
    quant_ns: list[int] = field(default_factory=list)
    fp32_ns: list[int] = field(default_factory=list)
    kernels: list[str] = field(default_factory=list)
    memory_bytes: int | None = None
    weight_bytes: int | None = None
    describe: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def speedup(self) -> tuple[float, float]:
        """fp32 p50 / quantised p50 and the bootstrap 95% CI half-width."""
        fp32, quant = np.asarray(self.fp32_ns, float), np.asarray(self.quant_ns, float)
        rng = np.random.default_rng(self.seed)
        ratios = [
            np.median(rng.choice(fp32, fp32.size)) / np.median(rng.choice(quant, quant.size))
            for _ in range(BOOTSTRAP)
        ]
        low, high = np.percentile(ratios, [2.5, 97.5])
        return float(np.median(fp32) / np.median(quant)), float((high - low) / 2)

    def metrics(self) -> list[Metric]:
        if self.reason is not None:
            return [spec(None, reason=self.reason) for spec in QUANT_METRICS]
        quant, fp32 = latency_stats(self.quant_ns), latency_stats(self.fp32_ns)

        def half(stats: Any) -> float | None:
            ci = stats.p50_ci95
            return None if ci is None else (ci[1] - ci[0]) / 2

        ratio, ratio_ci = self.speedup()
        assert self.weight_bytes is not None
        memory = SPECS["quant_peak_memory_mb"]
        return [
            SPECS["quant_latency_p50_ms"](quant.p50, ci95=half(quant), n=quant.n),
            SPECS["quant_fp32_latency_p50_ms"](fp32.p50, ci95=half(fp32), n=fp32.n),
            SPECS["quant_speedup"](ratio, ci95=ratio_ci, n=min(quant.n, fp32.n)),
            memory(None, reason="the profiler could not read the compiled model's allocations")
            if self.memory_bytes is None
            else memory(self.memory_bytes / 1e6),
            SPECS["weight_mb"](self.weight_bytes / 1e6),
        ]

    def statistics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"precision": self.precision, "reason": self.reason}
        if self.reason is None:
            out.update(
                backend="inductor (freezing) -> x86 oneDNN int8 kernels",
                kernels=self.kernels,
                quantised=latency_stats(self.quant_ns).as_dict(),
                fp32_same_compiler=latency_stats(self.fp32_ns).as_dict(),
            )
        return {**out, "model": self.describe}


def kernel_reason(precision: str, device: str) -> str | None:
    """Why ``precision`` has no kernels on ``device``, or ``None``."""
    spec = parse_precision(precision)
    if spec.simulated:
        return (
            f"{precision} is simulated: no int{spec.bits} kernel exists to time, and an "
            "emulated time is not a measurement"
        )
    if device.partition(":")[0] != "cpu":
        return f"unsupported on {device}: the int8 kernels of the PT2E x86 path are CPU kernels"
    return None


def time_quantised(
    backbone: nn.Module,
    section: dict[str, Any],
    pool: torch.Tensor,
    tier: Tier,
    *,
    device: str,
    seed: int,
) -> QuantisedTiming:
    """Quantise ``backbone`` as ``section`` says (calibrated on the seeded subset of
    ``pool``), lower it to int8 kernels and time it against fp32 through the same compiler."""
    from kdbench.quantization.scoring import quantise_student

    precision = section["name"]
    reason = kernel_reason(precision, device)
    if reason is not None:
        return QuantisedTiming(precision, reason=reason, seed=seed)
    from kdbench.quantization.ptq import compile_fp32, lower_to_kernels

    student = quantise_student(backbone, section, pool)
    inputs: Sequence[torch.Tensor] = [pool[i : i + 1].contiguous() for i in range(len(pool))]
    compiled, kernels = lower_to_kernels(student.model, inputs[0])
    describe = student.statistics()
    if not kernels:
        return QuantisedTiming(
            precision,
            reason="inductor did not lower this graph to int8 kernels (no onednn.q* call in "
            "the generated code), so there is no int8 time to report",
            describe=describe,
            seed=seed,
        )
    fp32 = compile_fp32(backbone, inputs[0])
    sync = synchroniser("cpu")
    with torch.no_grad():
        quant_window = time_queries(compiled, inputs, tier, sync)
        fp32_window = time_queries(fp32, inputs, tier, sync)
        memory = peak_memory(compiled, inputs[0], "cpu")
    weights = student.model.weight_bytes
    activation = memory.activation_bytes
    total = None if activation is None else weights + inputs[0].numel() * 4 + activation
    return QuantisedTiming(
        precision,
        quant_ns=list(quant_window.samples_ns),
        fp32_ns=list(fp32_window.samples_ns),
        kernels=kernels,
        memory_bytes=total,
        weight_bytes=weights,
        describe=describe,
        seed=seed,
    )

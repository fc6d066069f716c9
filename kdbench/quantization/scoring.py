"""What a scoring protocol adds when it scores a student at a precision other than fp32.

The unit scores the fp32 student *and* its quantised copy on the same episodes, tasks or
draws, so the record gives the accuracy at the precision (the headline metrics keep their
names), the fp32 accuracy (``<metric>_fp32``), the drop with a paired 95% CI
(``<metric>_drop``: fp32 minus quantised, per episode or task), the weight bytes and the
peak activation bytes, and says how the model was quantised (``statistics["precision"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.quantization.calibration import calibration_indices, indices_digest
from kdbench.quantization.precisions import Precision, parse_precision
from kdbench.quantization.ptq import QuantizedModel, export_backbone, quantize
from kdbench.results import Metric, MetricSpec

MB = 1e6


def precision_section(name: str, smoke: bool) -> dict[str, Any]:
    """The ``precision`` config section a unit at ``name`` runs with."""
    parse_precision(name)
    return {"name": name, "calibration_images": 32 if smoke else 256, "calibration_seed": 0}


def precision_specs(headlines: Sequence[MetricSpec]) -> tuple[MetricSpec, ...]:
    """The metrics a quantised unit adds: fp32 twin and paired drop of each headline metric,
    weight and activation megabytes."""
    specs: list[MetricSpec] = []
    for h in headlines:
        specs.append(
            MetricSpec(
                f"{h.name}_fp32",
                h.higher_is_better,
                h.unit,
                description=f"Quantised units: {h.name} of the same student at fp32, on the "
                "same draws.",
            )
        )
        specs.append(
            MetricSpec(
                f"{h.name}_drop",
                not h.higher_is_better,
                h.unit,
                description=f"Quantised units: {h.name} at fp32 minus at the unit's precision, "
                "with a paired 95% CI over the same draws.",
            )
        )
    specs += [
        MetricSpec(
            "weight_mb",
            False,
            "MB",
            description="Quantised units: weight bytes at their stored width (quantised "
            "weights packed at their bits, scales and the rest at their dtype; 10^6 bytes).",
        ),
        MetricSpec(
            "activation_peak_mb",
            False,
            "MB",
            description="Quantised units: peak live activation bytes of a batch-1 forward, "
            "quantised tensors at their width, counted from the graph (10^6 bytes).",
        ),
    ]
    return tuple(specs)


def paired_drop(fp32: np.ndarray, quantised: np.ndarray) -> tuple[float, float | None]:
    """Mean of ``fp32 - quantised`` over the same draws, in their unit, and its 95% CI
    half-width (Student's t below 30 draws)."""
    from kdbench.metrics.stats import mean_ci95

    diff = np.asarray(fp32, dtype=np.float64) - np.asarray(quantised, dtype=np.float64)
    return mean_ci95(diff)


def twin_and_drop(
    protocol: Any, fp32: Metric, fp32_draws: np.ndarray, quantised_draws: np.ndarray
) -> list[Metric]:
    """A quantised unit's ``<name>_fp32`` (the fp32 metric ``fp32``, as scored) and
    ``<name>_drop`` (fp32 minus quantised over the same draws, episodes, tasks or images, in
    the metric's unit, with a paired 95% CI) for the headline metric ``fp32``."""
    twin = protocol.metric(f"{fp32.name}_fp32")(fp32.value, ci95=fp32.ci95, n=fp32.n)
    if not len(fp32_draws):
        drop = protocol.metric(f"{fp32.name}_drop")(None, reason="no draw was scored")
        return [twin, drop]
    value, ci = paired_drop(fp32_draws, quantised_draws)
    return [twin, protocol.metric(f"{fp32.name}_drop")(value, ci95=ci, n=len(fp32_draws))]


@dataclass
class QuantisedStudent:
    """A unit's student at its precision, and what the record says about it."""

    precision: Precision
    model: QuantizedModel
    indices: torch.Tensor
    fp32_activation_bytes: int
    notes: list[str] = field(default_factory=list)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def draws(self) -> dict[str, str]:
        return {"calibration": indices_digest(self.indices)}

    def statistics(self) -> dict[str, Any]:
        return {
            **self.model.describe(),
            "activation_peak_bytes": self.model.activation_peak_bytes(),
            "fp32_activation_peak_bytes": self.fp32_activation_bytes,
            "scored_with": "the converted graph run eagerly (quantised values exact, fp32 "
            "arithmetic between them)",
        }

    def footprint_metrics(self, protocol: Any) -> list[Metric]:
        return [
            protocol.metric("weight_mb")(self.model.weight_bytes / MB),
            protocol.metric("activation_peak_mb")(self.model.activation_peak_bytes() / MB),
        ]


ImagePool = tuple[int, Callable[[np.ndarray], torch.Tensor]]
"""Training images drawn on demand: how many there are, and a loader of those at indices."""


def quantise_student(
    backbone: nn.Module,
    section: dict[str, Any],
    train_images: torch.Tensor | ImagePool,
    *,
    progress: Callable[..., Any] | None = None,
) -> QuantisedStudent:
    """``backbone`` (images in, any tensor out) quantised as the ``precision`` config
    ``section`` says, calibrated on the seeded subset of ``train_images`` (a tensor, or an
    :data:`ImagePool` whose images are loaded only for the subset)."""
    precision = parse_precision(section["name"])
    size = train_images[0] if isinstance(train_images, tuple) else len(train_images)
    indices = calibration_indices(size, section["calibration_images"], section["calibration_seed"])
    if isinstance(train_images, tuple):
        calibration = train_images[1](indices.numpy())
    else:
        calibration = train_images[indices]
    quantized = quantize(backbone, precision, calibration, progress=progress)
    from kdbench.quantization.footprint import activation_peak_bytes
    from kdbench.quantization.ptq import as_float_images

    example = as_float_images(calibration[:1])
    fp32_graph = export_backbone(backbone, example.expand(2, -1, -1, -1))
    fp32_peak = activation_peak_bytes(fp32_graph, example)
    notes = [
        f"scored at {precision.label}: static post-training quantisation (torchao PT2E, x86 "
        f"inductor quantiser) calibrated on {len(indices)} training images (seed "
        f"{section['calibration_seed']}); the fp32 student is scored on the same draws",
        *quantized.notes,
    ]
    if precision.simulated:
        notes.append(
            f"{precision.name} is simulated: quantise/dequantise in fp32 arithmetic, no "
            f"int{precision.bits} kernel ran"
        )
    return QuantisedStudent(precision, quantized, indices, fp32_peak, notes)

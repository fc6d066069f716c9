"""The figures the device protocol reports, one declaration shared by the protocol, the
``kdbench device`` command and the docs.

fp32 figures have plain names (``latency_p50_ms`` is the headline); other precisions add a
suffix (``latency_p50_ms_bf16``, ``_fp16``, ``_int8``). A precision the device does not
support, or that was not asked for, is ``null`` with the reason, never left out.
"""

from __future__ import annotations

from kdbench.device.precision import PRECISIONS, suffix
from kdbench.results import MetricSpec

# (base name, higher is better, unit, description)
PER_PRECISION: tuple[tuple[str, bool, str | None, str], ...] = (
    ("latency_p50_ms", False, "ms",
     "Median latency of one image (batch 1), input already on the device."),
    ("latency_p90_ms", False, "ms", "90th percentile latency at batch 1."),
    ("latency_p99_ms", False, "ms",
     "99th percentile latency at batch 1 (null below 662 queries)."),
    ("latency_iqr_ratio", False, None,
     "Interquartile range / median of the batch-1 latencies."),
    ("throughput_ips", True, "images/s",
     "Images per second at batch N, batches back to back."),
    ("peak_memory_mb", False, "MB",
     "Weights + input + activation peak of one batch-1 forward (tensors; 10^6 bytes)."),
    ("energy_mj_per_image", False, "mJ/image",
     "Energy counter difference over the batch-1 latency window / images."),
    ("energy_dynamic_mj_per_image", False, "mJ/image",
     "Secondary: batch-1 energy per image minus idle power x window time."),
    ("throughput_energy_mj_per_image", False, "mJ/image",
     "Energy counter difference over the batch-N window / images."),
)  # fmt: skip

SHARED: tuple[tuple[str, bool, str | None, str], ...] = (
    ("params_m", False, "M", "Parameters of the measured backbone, in millions."),
    ("gflops", False, "GFLOPs",
     "FLOPs of one image from FlopCounterMode (2 FLOPs per multiply-accumulate)."),
    ("gmacs", False, "GMACs", "Multiply-accumulates of one image: GFLOPs / 2."),
    ("idle_power_w", False, "W",
     "Power the energy sensor reads while nothing runs (measured separately)."),
)  # fmt: skip


def _specs() -> tuple[MetricSpec, ...]:
    specs = []
    for precision in PRECISIONS:
        for base, higher, unit, text in PER_PRECISION:
            name = base + suffix(precision)
            label = text if precision == "fp32" else f"{text} ({precision})"
            if precision == "fp32" and base.startswith(("latency", "throughput", "peak", "energy")):
                label = f"{text} (fp32, TF32 off)"
            headline = name == "latency_p50_ms"
            specs.append(MetricSpec(name, higher, unit, headline=headline, description=label))
    specs += [
        MetricSpec(name, higher, unit, description=text) for name, higher, unit, text in SHARED
    ]
    return tuple(specs)


DEVICE_METRICS: tuple[MetricSpec, ...] = _specs()
SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in DEVICE_METRICS}

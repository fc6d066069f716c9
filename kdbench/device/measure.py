"""Measure what a backbone costs on a device: the one code path behind the ``device``
protocol and ``kdbench device MODEL``.

Order of work: fingerprint and state; parameters and FLOPs (fp32, batch 1); idle power
(when a sensor can be read); then for each precision: support check, the model prepared
for it, one warm-up forward, peak memory of a batch-1 forward, the batch-1 latency window
(with energy) and the batch-N throughput window (with energy). Threads are pinned and TF32
is off for the whole measurement; both are restored afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.device.figures import SPECS
from kdbench.device.fingerprint import DeviceFingerprint, default_threads
from kdbench.device.flops import FlopCount, count_flops, count_params
from kdbench.device.memory import MemoryReading, peak_memory
from kdbench.device.precision import (
    PRECISIONS,
    coverage_note,
    prepare,
    quantisation_coverage,
    quiet_quantization,
    strict_fp32,
    suffix,
)
from kdbench.device.precision import support as precision_support
from kdbench.device.sensors import EnergySensor, SensorChoice
from kdbench.device.subject import image_pool
from kdbench.device.threads import pinned_threads
from kdbench.device.timing import (
    Tier,
    Window,
    idle_power,
    latency_stats,
    synchroniser,
    time_queries,
    time_throughput,
)
from kdbench.results import Metric

WINDOW_FACTOR = 100
"""An energy window lasts at least this many update periods of the sensor."""


@dataclass
class MeasureConfig:
    """How long and how much to measure (the protocol's config, flattened)."""

    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    threads: int | None = None
    tier: Tier = field(default_factory=Tier)
    batch_size: int = 32
    throughput_warmup: int = 3
    throughput_min_batches: int = 10
    throughput_min_seconds: float = 2.0
    idle_seconds: float = 2.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MeasureConfig:
        latency, throughput = config["latency"], config["throughput"]
        return cls(
            precisions=list(config["precisions"]),
            threads=config.get("threads"),
            tier=Tier(
                warmup=int(latency["warmup"]),
                min_queries=int(latency["min_queries"]),
                min_seconds=float(latency["min_seconds"]),
            ),
            batch_size=int(throughput["batch_size"]),
            throughput_warmup=int(throughput["warmup"]),
            throughput_min_batches=int(throughput["min_batches"]),
            throughput_min_seconds=float(throughput["min_seconds"]),
            idle_seconds=float(config["idle_seconds"]),
        )


@dataclass
class PrecisionResult:
    """Everything measured at one precision, or why it was not."""

    precision: str
    reason: str | None = None
    latency: Window | None = None
    throughput: Window | None = None
    memory: MemoryReading | None = None
    coverage: dict[str, Any] | None = None
    """int8 only: which layers were quantised
    (:func:`~kdbench.device.precision.quantisation_coverage`)."""


@dataclass
class DeviceReport:
    """The measurement of one backbone on one device."""

    device: str
    threads: int
    input_size: tuple[int, int]
    batch_size: int
    params: int
    flops: FlopCount
    results: dict[str, PrecisionResult]
    fingerprint: dict[str, Any]
    sensor: dict[str, Any] | None
    energy_reason: str | None
    idle_power_w: float | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    # -- figures -------------------------------------------------------------------------
    def metrics(self) -> list[Metric]:
        """Every declared figure: a value, or ``None`` with the reason."""
        out = [
            SPECS["params_m"](self.params / 1e6),
            SPECS["gflops"](self.flops.gflops),
            SPECS["gmacs"](self.flops.gmacs),
        ]
        if self.idle_power_w is None:
            out.append(SPECS["idle_power_w"](None, reason=self.energy_reason or "no sensor"))
        else:
            out.append(SPECS["idle_power_w"](self.idle_power_w))
        for precision in PRECISIONS:
            out += self._precision_metrics(precision)
        return out

    def _precision_metrics(self, precision: str) -> list[Metric]:
        s = suffix(precision)
        spec = lambda base: SPECS[base + s]  # noqa: E731
        result = self.results.get(precision)
        if result is None or result.reason is not None:
            reason = (
                result.reason
                if result is not None
                else f"not measured: {precision} is not in the configured precisions"
            )
            return [spec(base)(None, reason=reason) for base, *_ in _bases()]
        assert result.latency is not None and result.throughput is not None
        stats = latency_stats(result.latency.samples_ns)
        ci = None
        if stats.p50_ci95 is not None:
            ci = (stats.p50_ci95[1] - stats.p50_ci95[0]) / 2
        out = [
            spec("latency_p50_ms")(stats.p50, ci95=ci, n=stats.n),
            spec("latency_p90_ms")(stats.p90, n=stats.n),
            spec("latency_p99_ms")(
                stats.p99,
                n=stats.n,
                reason=None
                if stats.p99 is not None
                else f"p99 needs at least 662 queries; this window had {stats.n}",
            ),
            spec("latency_iqr_ratio")(stats.iqr_ratio, n=stats.n),
            spec("throughput_ips")(
                result.throughput.images / result.throughput.seconds, n=result.throughput.calls
            ),
        ]
        memory = result.memory
        if memory is None or memory.bytes is None:
            why = memory.reason if memory is not None else "not measured"
            out.append(spec("peak_memory_mb")(None, reason=why))
        else:
            out.append(spec("peak_memory_mb")(memory.megabytes))
        out += self._energy(spec, result)
        return out

    def _energy(self, spec: Any, result: PrecisionResult) -> list[Metric]:
        lat, thr = result.latency, result.throughput
        assert lat is not None and thr is not None
        if lat.joules is None or thr.joules is None:
            reason = self.energy_reason or "no energy sensor was read"
            return [
                spec(name)(None, reason=reason)
                for name in (
                    "energy_mj_per_image",
                    "energy_dynamic_mj_per_image",
                    "throughput_energy_mj_per_image",
                )
            ]
        per_image = 1000 * lat.joules / lat.images
        out = [spec("energy_mj_per_image")(per_image, n=lat.images)]
        if self.idle_power_w is None:
            out.append(spec("energy_dynamic_mj_per_image")(None, reason="idle power unknown"))
        else:
            dynamic = 1000 * (lat.joules - self.idle_power_w * lat.seconds) / lat.images
            if dynamic < 0:
                out.append(
                    spec("energy_dynamic_mj_per_image")(
                        None,
                        reason="the window used less energy than idle power predicts "
                        "(dynamic energy is within the sensor's noise)",
                    )
                )
            else:
                out.append(spec("energy_dynamic_mj_per_image")(dynamic, n=lat.images))
        out.append(
            spec("throughput_energy_mj_per_image")(1000 * thr.joules / thr.images, n=thr.images)
        )
        return out

    def statistics(self) -> dict[str, Any]:
        """Sufficient statistics: latency quantiles, window sizes, energy readings."""
        per_precision: dict[str, Any] = {}
        for precision, result in self.results.items():
            coverage = {} if result.coverage is None else {"quantisation": result.coverage}
            if result.reason is not None or result.latency is None or result.throughput is None:
                per_precision[precision] = {"reason": result.reason, **coverage}
                continue
            lat, thr = result.latency, result.throughput
            per_precision[precision] = {
                "latency": latency_stats(lat.samples_ns).as_dict(),
                **latency_summary(lat.samples_ns),
                "latency_window": {
                    "seconds": lat.seconds,
                    "queries": lat.calls,
                    "joules": lat.joules,
                },
                "throughput_window": {
                    "seconds": thr.seconds,
                    "batches": thr.calls,
                    "images": thr.images,
                    "joules": thr.joules,
                },
                "memory": None
                if result.memory is None
                else {
                    "bytes": result.memory.bytes,
                    "weights_bytes": result.memory.weights_bytes,
                    "activation_bytes": result.memory.activation_bytes,
                    "method": result.memory.method,
                },
                **coverage,
            }
        return {
            "device": self.device,
            "threads": self.threads,
            "input_size": list(self.input_size),
            "batch_size": self.batch_size,
            "flops_by_op": self.flops.by_op,
            "flop_convention": "FlopCounterMode, 2 FLOPs per multiply-accumulate; GMACs = GFLOPs/2",
            "sensor": self.sensor,
            "energy_reason": self.energy_reason,
            "precisions": per_precision,
        }


def latency_summary(samples_ns: list[int]) -> dict[str, Any]:
    """What rescoring needs without every sample: the quantiles at 0.5% steps (linear
    interpolation, so entries 100, 180 and 198 are p50, p90 and p99 exactly, 50 and 150 the
    quartiles) and the median of each tenth of the window in time order (drift, throttling)."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    tenths = [float(np.median(part)) for part in np.array_split(ms, 10) if part.size]
    return {
        "latency_quantiles_ms": np.percentile(ms, np.linspace(0, 100, 201)).round(4).tolist(),
        "latency_p50_by_tenth_ms": [round(v, 4) for v in tenths],
    }


def _bases() -> list[tuple[str, bool, str | None, str]]:
    from kdbench.device.figures import PER_PRECISION

    return list(PER_PRECISION)


def _batch(pool: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` images cycled from the pool."""
    index = torch.arange(size) % pool.shape[0]
    return pool[index]


def _measure_precision(
    model: nn.Module,
    precision: str,
    pool: torch.Tensor,
    config: MeasureConfig,
    device: str,
    sensor: EnergySensor | None,
) -> PrecisionResult:
    reason = precision_support(precision, device)
    if reason is not None:
        return PrecisionResult(precision, reason=reason)
    run_on = "cpu" if precision == "int8" else device
    sync = synchroniser(run_on)
    prepared, dtype = prepare(model, precision, run_on)
    coverage = quantisation_coverage(model, prepared) if precision == "int8" else None
    inputs = [pool[i : i + 1].to(device=run_on, dtype=dtype).contiguous() for i in range(len(pool))]
    batch = _batch(pool, config.batch_size).to(device=run_on, dtype=dtype).contiguous()
    window = config.tier.min_seconds
    thr_window = config.throughput_min_seconds
    if sensor is not None:
        window = max(window, WINDOW_FACTOR * sensor.update_period_s)
        thr_window = max(thr_window, WINDOW_FACTOR * sensor.update_period_s)
    prepared(inputs[0])
    sync()
    memory = peak_memory(prepared, inputs[0], run_on)
    latency = time_queries(prepared, inputs, config.tier, sync, sensor, min_seconds=window)
    throughput = time_throughput(
        prepared,
        batch,
        warmup=config.throughput_warmup,
        min_batches=config.throughput_min_batches,
        min_seconds=thr_window,
        sync=sync,
        sensor=sensor,
    )
    return PrecisionResult(precision, None, latency, throughput, memory, coverage)


def measure(
    model: nn.Module,
    pool: torch.Tensor,
    config: MeasureConfig,
    *,
    device: str = "cpu",
    sensor: EnergySensor | None = None,
    energy_reason: str | None = None,
    log: Any = None,
) -> DeviceReport:
    """Measure ``model`` (a module taking float images in [0, 1] at ``pool``'s size).

    ``pool`` holds the distinct input images (N, 3, H, W) on the CPU; each precision's
    inputs are copied to the device before its windows. ``sensor`` is read at the edges of
    every window; without one, energy figures are ``None`` with ``energy_reason``.
    """
    started = time.perf_counter()
    log = log or (lambda _msg: None)
    if device.partition(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"the device protocol measures cpu or cuda devices, not {device!r}")
    if pool.ndim != 4 or pool.shape[0] < 1:
        raise ValueError(f"the input pool must be (N, 3, H, W) images, not {tuple(pool.shape)}")
    threads = int(config.threads or default_threads())
    fingerprint = DeviceFingerprint(device, threads)
    before = fingerprint.snapshot()
    results: dict[str, PrecisionResult] = {}
    idle_w = None
    notes: list[str] = []
    model = model.float().eval()
    with pinned_threads(threads), strict_fp32(), torch.inference_mode():
        params = count_params(model)
        flops = count_flops(model.to(device), pool[:1].to(device))
        if sensor is not None:
            sensor.start()
        try:
            if sensor is not None:
                seconds = max(config.idle_seconds, WINDOW_FACTOR * sensor.update_period_s)
                log(f"idle power over {seconds:.1f} s")
                idle_w = idle_power(sensor, seconds, synchroniser(device))
            for precision in config.precisions:
                log(f"{precision}: measuring")
                try:
                    with quiet_quantization():
                        results[precision] = _measure_precision(
                            model, precision, pool, config, device, sensor
                        )
                except Exception as error:  # an op missing for a dtype on this device
                    if precision == "fp32":
                        raise
                    reason = f"failed on {device}: {type(error).__name__}: {error}"
                    results[precision] = PrecisionResult(precision, reason=reason)
                    notes.append(f"{precision}: {reason}")
                coverage = results[precision].coverage
                note = coverage_note(coverage) if coverage is not None else None
                if note is not None:
                    notes.append(note)
        finally:
            if sensor is not None:
                sensor.stop()
    after = fingerprint.snapshot()
    return DeviceReport(
        device=device,
        threads=threads,
        input_size=(int(pool.shape[-2]), int(pool.shape[-1])),
        batch_size=config.batch_size,
        params=params,
        flops=flops,
        results=results,
        fingerprint=fingerprint.as_dict(before, after),
        sensor=sensor.describe() if sensor is not None else None,
        energy_reason=energy_reason if sensor is None else None,
        idle_power_w=idle_w,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def measure_on_pool(
    model: nn.Module,
    config: dict[str, Any],
    *,
    seed: int,
    device: str,
    choice: SensorChoice,
    log: Any = None,
) -> tuple[torch.Tensor, DeviceReport]:
    """Measure ``model`` as the device protocol does: on its seeded pool of
    ``config["pool_images"]`` Shapes images at the model's input size, with the sensor
    ``choice`` picked. Returns the pool (its digest goes into records) and the report."""
    pool = image_pool(config["pool_images"], seed, model.input_size)
    report = measure(
        model,
        pool,
        MeasureConfig.from_config(config),
        device=device,
        sensor=choice.sensor,
        energy_reason=choice.reason,
        log=log,
    )
    return pool, report

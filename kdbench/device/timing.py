"""Latency and throughput windows, and the statistics of latency samples.

Latency (batch 1): each query takes an input already on the device, is synchronised before
and after (on GPUs) and timed on its own with ``time.perf_counter_ns``; warm-up queries run
first, in the caller's exact context (grad mode, dtype, threads). Queries go on until both
``min_queries`` and ``min_seconds`` are reached. Throughput (batch N): batches run back to
back and are synchronised only at the window's edges. The garbage collector is off inside
a window (as ``timeit`` does). An energy sensor, when given, is read at the window's edges.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kdbench.device.sensors.base import EnergySensor

P99_MIN_QUERIES = 662
"""Fewest queries for which p99 is reported (PROTOCOLS.md §5)."""


@dataclass(frozen=True)
class Tier:
    """How long a latency window lasts."""

    warmup: int = 10
    min_queries: int = 1000
    min_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.warmup < 10:
            raise ValueError(f"warm-up must be at least 10 queries, not {self.warmup}")
        if self.min_queries < 1 or self.min_seconds < 0:
            raise ValueError("min_queries must be >= 1 and min_seconds >= 0")


@dataclass
class Window:
    """One timed window: per-query times (latency windows), duration, work and energy."""

    seconds: float
    calls: int
    images: int
    samples_ns: list[int] = field(default_factory=list)
    joules: float | None = None

    @property
    def joules_per_image(self) -> float | None:
        return None if self.joules is None else self.joules / self.images


def synchroniser(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on CPUs)."""
    if device.startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def _read(sensor: EnergySensor | None) -> float | None:
    return None if sensor is None else sensor.read_joules()


@dataclass
class _Edges:
    start: int = 0
    end: int = 0
    joules: float | None = None

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / 1e9


@contextmanager
def _window(sensor: EnergySensor | None, sync: Callable[[], None]) -> Iterator[_Edges]:
    """The edges of a timed window: garbage collection off inside, the device synchronised
    before the start, the clock and the energy counter read at both ends. The body leaves
    the device synchronised (its last work waited for) before the window ends."""
    edges = _Edges()
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        sync()
        start_joules = _read(sensor)
        edges.start = time.perf_counter_ns()
        yield edges
        edges.end = time.perf_counter_ns()
        end_joules = _read(sensor)
        if start_joules is not None and end_joules is not None:
            edges.joules = end_joules - start_joules
    finally:
        if gc_enabled:
            gc.enable()


def time_queries(
    fn: Callable[[torch.Tensor], Any],
    inputs: Sequence[torch.Tensor],
    tier: Tier,
    sync: Callable[[], None] = lambda: None,
    sensor: EnergySensor | None = None,
    min_seconds: float | None = None,
) -> Window:
    """Time ``fn`` on ``inputs`` (cycled) one query at a time; see the module docstring.

    ``min_seconds`` overrides the tier's (to stretch a window for an energy sensor).
    """
    if not inputs:
        raise ValueError("time_queries needs at least one input")
    seconds = tier.min_seconds if min_seconds is None else min_seconds
    n_inputs = len(inputs)
    for i in range(tier.warmup):
        sync()
        fn(inputs[i % n_inputs])
        sync()
    samples: list[int] = []
    i = 0
    with _window(sensor, sync) as edges:
        deadline = edges.start + int(seconds * 1e9)
        while True:
            x = inputs[i % n_inputs]
            sync()
            t0 = time.perf_counter_ns()
            fn(x)
            sync()
            t1 = time.perf_counter_ns()
            samples.append(t1 - t0)
            i += 1
            if i >= tier.min_queries and t1 >= deadline:
                break
    return Window(edges.seconds, i, i * int(inputs[0].shape[0]), samples, edges.joules)


def time_throughput(
    fn: Callable[[torch.Tensor], Any],
    batch: torch.Tensor,
    *,
    warmup: int,
    min_batches: int,
    min_seconds: float,
    sync: Callable[[], None] = lambda: None,
    sensor: EnergySensor | None = None,
) -> Window:
    """Run ``fn(batch)`` back to back, synchronising only at the window's edges."""
    for _ in range(warmup):
        fn(batch)
    calls = 0
    with _window(sensor, sync) as edges:
        deadline = edges.start + int(min_seconds * 1e9)
        while calls < min_batches or time.perf_counter_ns() < deadline:
            fn(batch)
            calls += 1
        sync()
    return Window(edges.seconds, calls, calls * int(batch.shape[0]), [], edges.joules)


def idle_power(sensor: EnergySensor, seconds: float, sync: Callable[[], None]) -> float:
    """Mean power in watts while nothing runs, from the counter over ``seconds``."""
    sync()
    start_joules = sensor.read_joules()
    start = time.perf_counter()
    time.sleep(seconds)
    joules = sensor.read_joules() - start_joules
    return joules / (time.perf_counter() - start)


@dataclass
class LatencyStats:
    """Summary of per-query latencies in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float | None
    iqr_ratio: float
    mean: float
    std: float
    min: float
    max: float
    p50_ci95: tuple[float, float] | None
    """Distribution-free 95% interval of the median (order statistics; assumes queries
    are independent, which back-to-back queries only approximately are)."""

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("n", "p50", "p90", "p99", "iqr_ratio")}
        out.update(mean=self.mean, std=self.std, min=self.min, max=self.max)
        out["p50_ci95"] = list(self.p50_ci95) if self.p50_ci95 else None
        return out


def median_ci95(sorted_ms: np.ndarray) -> tuple[float, float] | None:
    """95% interval of the median from order statistics (normal approximation to the
    binomial): ranks n/2 ± 1.96·√n/2."""
    n = len(sorted_ms)
    if n < 6:
        return None
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    return float(sorted_ms[lo]), float(sorted_ms[hi])


def latency_stats(samples_ns: Sequence[int] | np.ndarray) -> LatencyStats:
    """p50, p90, p99 (from 662 queries on), IQR / median and the rest, in milliseconds."""
    ms = np.sort(np.asarray(samples_ns, dtype=np.float64) / 1e6)
    if ms.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
    return LatencyStats(
        n=int(ms.size),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99) if ms.size >= P99_MIN_QUERIES else None,
        iqr_ratio=float((p75 - p25) / p50) if p50 > 0 else 0.0,
        mean=float(ms.mean()),
        std=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        min=float(ms[0]),
        max=float(ms[-1]),
        p50_ci95=median_ci95(ms),
    )

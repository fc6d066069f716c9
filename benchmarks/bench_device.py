"""kdbench's batch-1 median latency against ``torch.utils.benchmark.Timer``, on the same
model, input, threads and grad mode: the two should agree within the run's noise.

kdbench times every query on its own (``perf_counter_ns`` around one forward) and takes
the median; ``Timer.blocked_autorange`` times blocks of many back-to-back calls and takes
the median of the block means. pytest-benchmark's median of single calls is a third view.

    PYTHONPATH=. python -m pytest benchmarks/bench_device.py -s      # asserts agreement
    PYTHONPATH=. python benchmarks/bench_device.py [--threads N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch
from torch.utils.benchmark import Timer

from kdbench.device.precision import strict_fp32
from kdbench.device.subject import image_pool
from kdbench.device.threads import pinned_threads
from kdbench.device.timing import Tier, latency_stats, time_queries
from kdbench.world.models import build_vit


def compare(
    role: str = "student", threads: int = 1, seconds: float = 10.0, rounds: int = 5
) -> dict[str, Any]:
    """Both measurements of the Shapes ``role`` ViT at 32 px, batch 1, fp32, one input.

    The two run in alternating rounds (``seconds / rounds`` each), so a change of machine
    load between them hits both alike. ``kdbench_blocked_median_ms`` applies Timer's own
    statistic (median of the means of blocks of ``number_per_run`` calls) to kdbench's
    samples: it separates a difference in timing from a difference in statistic.
    """
    model = build_vit(role).eval()  # random weights: the cost does not depend on them
    x = image_pool(64, 0, model.input_size)[:1].contiguous()
    samples: list[int] = []
    blocks: list[float] = []
    per_call = 1
    per_round: list[tuple[float, float]] = []
    with pinned_threads(threads), strict_fp32(), torch.inference_mode():
        for _ in range(rounds):
            window = time_queries(model, [x], Tier(10, 100, seconds / rounds))
            timer = Timer(
                "model(x)", globals={"model": model, "x": x}, num_threads=threads
            ).blocked_autorange(min_run_time=seconds / rounds)
            samples += window.samples_ns
            blocks += list(timer.times)
            per_call = timer.number_per_run
            per_round.append((latency_stats(window.samples_ns).p50, timer.median * 1e3))
    stats = latency_stats(samples)
    ms = np.asarray(samples, dtype=np.float64) / 1e6
    usable = len(ms) // per_call * per_call
    blocked = float(np.median(ms[:usable].reshape(-1, per_call).mean(axis=1)))
    timer_ms = float(np.median(blocks)) * 1e3
    return {
        "model": f"shapes-{role}",
        "threads": threads,
        "kdbench_p50_ms": stats.p50,
        "kdbench_iqr_ratio": stats.iqr_ratio,
        "kdbench_queries": stats.n,
        "kdbench_p50_ci95_ms": list(stats.p50_ci95) if stats.p50_ci95 else None,
        "kdbench_blocked_median_ms": blocked,
        "timer_median_ms": timer_ms,
        "timer_blocks": len(blocks),
        "timer_calls_per_block": per_call,
        "rounds_p50_vs_timer_ms": [[round(a, 4), round(b, 4)] for a, b in per_round],
        "relative_difference": (stats.p50 - timer_ms) / timer_ms,
        "within_noise": agree(stats.p50, stats.iqr_ratio, timer_ms),
    }


def agree(p50_ms: float, iqr_ratio: float, other_ms: float) -> bool:
    """Within half the interquartile range of kdbench's samples, or within 10%."""
    tolerance = max(0.5 * iqr_ratio * p50_ms, 0.10 * p50_ms)
    return abs(p50_ms - other_ms) <= tolerance


def test_p50_agrees_with_torch_timer(benchmark):
    result = compare("student", threads=1, seconds=5.0)
    model = build_vit("student").eval()
    x = image_pool(64, 0, model.input_size)[:1].contiguous()
    with pinned_threads(1), strict_fp32(), torch.inference_mode():
        benchmark.pedantic(model, args=(x,), rounds=1000, iterations=1, warmup_rounds=10)
    result["pytest_benchmark_median_ms"] = benchmark.stats.stats.median * 1e3
    print(json.dumps(result, indent=2))
    assert result["within_noise"], result
    assert agree(result["kdbench_p50_ms"], result["kdbench_iqr_ratio"],
                 result["pytest_benchmark_median_ms"]), result  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    for role in ("student", "teacher"):
        print(json.dumps(compare(role, args.threads, args.seconds), indent=2))


if __name__ == "__main__":
    main()

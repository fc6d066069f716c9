"""Means with 95% confidence intervals, as every protocol reports them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

# Two-sided 97.5% quantiles of Student's t for 1..29 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
)  # fmt: skip
Z975 = 1.96


def critical_value(n: int) -> float:
    """1.96 for n >= 30 samples, Student's t with n-1 degrees of freedom below."""
    if n < 2:
        raise ValueError("a confidence interval needs at least 2 samples")
    return Z975 if n >= 30 else _T975[n - 2]


def mean_ci95(values: Iterable[float]) -> tuple[float, float | None]:
    """Mean and 95% CI half-width: ``crit * std(ddof=1) / sqrt(n)``.

    ``crit`` is 1.96 from 30 samples on and Student's t below. With one sample the
    half-width is ``None`` (unknown), never NaN. Non-finite values are refused.
    """
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    x = x.reshape(-1)
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError("mean_ci95 got NaN or infinite values")
    mean = float(x.mean())
    if x.size < 2:
        return mean, None
    half = critical_value(x.size) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, half


def paired_ci95(
    a: Mapping[int, float], b: Mapping[int, float]
) -> tuple[float | None, float | None, tuple[int, ...]]:
    """``a - b`` paired by key (a seed): the mean of the per-key differences over the keys
    both have, its 95% CI half-width (``None`` below two keys) and those keys (``None`` for
    the mean when none is shared)."""
    keys = tuple(sorted(set(a) & set(b)))
    if not keys:
        return None, None, keys
    mean, half = mean_ci95([a[k] - b[k] for k in keys])
    return mean, half, keys


def proportion_ci95(correct: int, n: int) -> tuple[float, float]:
    """Accuracy in % and its normal-approximation 95% half-width over ``n`` test examples."""
    if n <= 0:
        raise ValueError("proportion_ci95 needs at least one example")
    p = correct / n
    return 100 * p, 100 * Z975 * math.sqrt(p * (1 - p) / n)

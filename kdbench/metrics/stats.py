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


def wilson_interval(correct: int, n: int, z: float = Z975) -> tuple[float, float]:
    """The Wilson score interval of a proportion, as fractions in [0, 1].

    Unlike the normal approximation ``p ± z·√(p(1−p)/n)``, it does not collapse to zero
    width at 0% or 100% nor leave [0, 1] near them (Wilson 1927; Brown, Cai and DasGupta
    2001 recommend it for every n).
    """
    if n <= 0:
        raise ValueError("a proportion needs at least one example")
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be between 0 and n ({n}), got {correct}")
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_ci95(correct: int, n: int) -> tuple[float, float]:
    """Accuracy in % over ``n`` test examples and a 95% half-width from the Wilson interval.

    Records carry a symmetric half-width (``value ± ci95``) while the Wilson interval is
    not symmetric around the accuracy, so the half-width is the smallest that contains it:
    ``max(p − low, high − p)``. ``value ± ci95`` then covers the Wilson interval (coverage
    at least as good), and is never zero: 1200 of 1200 correct gives 100 ± 0.32, where the
    normal approximation gave 100 ± 0.
    """
    if n <= 0:
        raise ValueError("proportion_ci95 needs at least one example")
    p = correct / n
    low, high = wilson_interval(correct, n)
    return 100 * p, 100 * max(p - low, high - p)


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value of Student's t statistic ``t`` with ``df`` degrees of freedom.

    Exact for integer ``df`` by the finite series of Abramowitz and Stegun 26.7.3-4:
    with ``theta = atan(|t| / sqrt(df))``, ``P(|T| < |t|)`` is a short sum of powers of
    ``cos(theta)``; no special-function library is needed.
    """
    if df < 1:
        raise ValueError("Student's t needs at least 1 degree of freedom")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        total, term = 0.0, c
        if df > 1:
            total = term
            for k in range(3, df - 1, 2):
                term *= c * c * (k - 1) / k
                total += term
        inside = 2 / math.pi * (theta + s * total)
    else:
        total, term = 1.0, 1.0
        for k in range(2, df - 1, 2):
            term *= c * c * (k - 1) / k
            total += term
        inside = s * total
    return min(1.0, max(0.0, 1.0 - inside))


def paired_t_p(differences: Iterable[float]) -> float | None:
    """Two-sided p-value of a paired t-test on per-seed ``differences`` (mean zero under
    the null); None below two differences. Identical non-zero differences give 0."""
    x = np.asarray(list(differences), dtype=np.float64)
    if x.size < 2:
        return None
    sd = float(x.std(ddof=1))
    mean = float(x.mean())
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    return t_two_sided_p(mean / (sd / math.sqrt(x.size)), int(x.size - 1))


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (``min(1, max_{j<=i} (m - j + 1) p_(j))``) for a
    family of tests; a test is significant at level alpha when its adjusted p is below it."""
    ordered = sorted(p_values.items(), key=lambda kv: (kv[1], kv[0]))
    m = len(ordered)
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, (key, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[key] = running
    return adjusted


def paired_bootstrap(
    differences: Mapping[int, np.ndarray],
    *,
    resamples: int = 2000,
    seed: int = 0,
    chunk: int = 50,
) -> tuple[float, float, float, float]:
    """A hierarchical paired bootstrap of a mean difference: ``(mean, lower, upper, p)``.

    ``differences`` maps each shared seed to the per-draw differences A - B of that seed
    (the same episodes, tasks or draws scored for both; one value per seed when the records
    keep no draws). Each resample draws the seeds with replacement, then each drawn seed's
    draws with replacement, and averages; the 95% interval is the 2.5 and 97.5 percentiles.
    The two-sided p-value is twice the smaller tail of the resamples at 0, at least
    ``1 / resamples`` (a bootstrap cannot say less).
    """
    if not differences:
        raise ValueError("paired_bootstrap needs at least one seed")
    arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for _, v in sorted(differences.items())]
    if any(a.size == 0 or not np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("paired_bootstrap needs finite, non-empty differences per seed")
    rng = np.random.default_rng(seed)
    n_seeds = len(arrays)
    means = np.array([a.mean() for a in arrays])
    out = np.empty(resamples)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        picks = rng.integers(0, n_seeds, size=(size, n_seeds))
        totals = np.zeros(size)
        slots = np.arange(n_seeds)
        for s, array in enumerate(arrays):
            counts = (picks == s).sum(axis=1)
            if array.size == 1:
                totals += counts * means[s]
                continue
            # a seed drawn k times gets k independent resamples of its draws
            idx = rng.integers(0, array.size, size=(size, n_seeds, array.size))
            inner = array[idx].mean(axis=2)
            totals += (inner * (slots < counts[:, None])).sum(axis=1)
        out[start : start + size] = totals / n_seeds
    lower, upper = np.percentile(out, [2.5, 97.5])
    tail = min(float(np.mean(out <= 0)), float(np.mean(out >= 0)))
    p = max(min(1.0, 2 * tail), 1 / resamples)
    return float(means.mean()), float(lower), float(upper), p

import math

import numpy as np
import pytest
import torch

from kdbench.metrics import linear_cka, mean_ci95, proportion_ci95


def hsic_cka(x, y):
    """CKA through the centring matrix H, as in Kornblith et al. (2019)."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    return float(hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_)))


def test_linear_cka_matches_the_hsic_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randn(30, 7, generator=g, dtype=torch.float64)
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-9)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    assert linear_cka(x, 3 * x @ q + 1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="constant"):
        linear_cka(torch.ones(4, 2), x[:4])
    with pytest.raises(ValueError):
        linear_cka(x, y[:10])


def test_mean_ci95_uses_t_below_30_and_z_from_30():
    small = [1.0, 2.0, 4.0]
    mean, half = mean_ci95(small)
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(4.303 * np.std(small, ddof=1) / math.sqrt(3))
    big = np.arange(40, dtype=float)
    assert mean_ci95(big)[1] == pytest.approx(1.96 * big.std(ddof=1) / math.sqrt(40))
    assert mean_ci95([5.0]) == (5.0, None)
    with pytest.raises(ValueError, match="NaN"):
        mean_ci95([1.0, float("nan")])


def test_wilson_interval_matches_its_closed_form_and_published_values():
    from kdbench.metrics import wilson_interval

    # Brown, Cai & DasGupta (2001), and any Wilson calculator: 0 of 10 -> [0, 0.2775],
    # 10 of 10 -> [0.7225, 1], 80 of 100 -> [0.7112, 0.8666] (z = 1.96).
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-4)
    assert wilson_interval(80, 100) == pytest.approx((0.71117, 0.86661), abs=1e-4)
    # a Wilson interval is where the score test does not reject: |p - q| = z·√(q(1-q)/n)
    for correct, n in ((3, 40), (37, 40), (500, 1200)):
        for q in wilson_interval(correct, n):
            if 0 < q < 1:
                assert abs(correct / n - q) == pytest.approx(1.96 * math.sqrt(q * (1 - q) / n))
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(11, 10)


def test_proportion_ci95_covers_the_wilson_interval_and_never_collapses():
    from kdbench.metrics import wilson_interval

    for correct, n in ((0, 1200), (1200, 1200), (1199, 1200), (80, 100), (600, 1200)):
        acc, half = proportion_ci95(correct, n)
        low, high = wilson_interval(correct, n)
        assert acc == pytest.approx(100 * correct / n)
        assert acc - half <= 100 * low + 1e-9 and acc + half >= 100 * high - 1e-9
        assert half > 0  # the normal approximation gives 0 at 0% and 100%
        assert half == pytest.approx(100 * max(correct / n - low, high - correct / n))
    # in the middle the two agree closely; near 100% Wilson is wider
    assert proportion_ci95(600, 1200)[1] == pytest.approx(
        100 * 1.96 * math.sqrt(0.25 / 1200), rel=0.01
    )
    assert proportion_ci95(1200, 1200)[1] == pytest.approx(0.319, abs=0.001)


# -- p-values and Holm's correction (the site's marks on differences from supervised) --------


def test_t_p_values_match_closed_forms_and_the_t_table():
    import math

    from kdbench.metrics.stats import _T975, t_two_sided_p

    for t in (0.0, 0.3, 1.0, 2.5, 12.0):
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
        assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
        assert t_two_sided_p(-t, 5) == t_two_sided_p(t, 5)
    for df, critical in enumerate(_T975, start=1):  # the 97.5% quantiles give p = 0.05
        assert t_two_sided_p(critical, df) == pytest.approx(0.05, abs=5e-4)
    assert t_two_sided_p(math.inf, 3) == 0.0


def test_paired_t_p_and_holm():
    from kdbench.metrics.stats import holm, paired_t_p

    assert paired_t_p([1.0]) is None
    assert paired_t_p([2.0, 2.0, 2.0]) == 0.0 and paired_t_p([0.0, 0.0]) == 1.0
    # mean 1.0333, sd 0.2082, n 3: t = 8.597 on 2 degrees of freedom
    assert paired_t_p([1.2, 0.8, 1.1]) == pytest.approx(0.0132591, abs=1e-6)
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({}) == {}

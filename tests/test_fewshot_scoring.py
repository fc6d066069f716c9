"""The few-shot scorer's float32 stage, its float64 guard and its cost model, and the faster
episode draw: every result bit for bit that of the per-episode loop and of the code they
replaced (``tests/fewshot_reference.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import kdbench.fewshot as fewshot
from kdbench.fewshot import (
    Episodes,
    _gather_scores,
    _gram_scores,
    _ncm_correct,
    _reference_distances,
    margin_tolerance,
    ncm_accuracy,
    ncm_accuracy_loop,
    plan_scoring,
    prepare_features,
    sample_episodes,
    score_error_bound,
)
from tests.fewshot_reference import (
    batched_float64_ncm_accuracy,
    floyd_subsets_by_comparison,
    prepare_features_float64,
)


def bank(classes=20, per_class=60, dim=64, spread=0.5, seed=0):
    """Non-negative features (as after a ReLU) with a decaying spectrum: classes a nearest
    mean tells apart about as well as on miniImageNet (about 55% one-shot)."""
    g = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    scale = 1 / np.sqrt(1 + np.arange(dim) / 8)
    centres = g.standard_normal((classes, dim)) * scale * spread
    noise = g.standard_normal((len(labels), dim)) * scale
    return np.maximum(centres[labels] + noise + 0.5, 0).astype(np.float32), labels


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# -- identical accuracies ---------------------------------------------------------------


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("dim,spread", [(24, 0.6), (256, 0.35)])
def test_both_paths_equal_the_loop_and_the_float64_scorer(shots, dim, spread):
    features, labels = bank(dim=dim, spread=spread)
    center = features.mean(0)
    ep = sample_episodes(labels, 5, shots, 15, 1200, seed=2)
    loop = ncm_accuracy_loop(features, labels, ep, center=center)
    assert 0.4 < loop.mean() < 0.95  # neither chance nor trivial
    before = batched_float64_ncm_accuracy(features, labels, ep, center=center)
    gather_before = batched_float64_ncm_accuracy(
        features, labels, ep, center=center, max_gram_bytes=0
    )
    assert np.array_equal(before, loop) and np.array_equal(gather_before, loop)
    for path in ("gram", "gather", "auto"):
        acc = ncm_accuracy(features, labels, ep, center=center, path=path, chunk_bytes=300_000)
        assert np.array_equal(acc, loop), path


def test_the_guard_rescores_a_few_queries_of_real_width_features():
    # at a few hundred dimensions float32 cannot call some queries, and rescoring them
    # changes the answer: the guard is needed, and cheap
    features, labels = bank(dim=256, spread=0.35)
    center = features.mean(0)
    f = prepare_features(features, center)
    ep = sample_episodes(labels, 5, 1, 15, 1200, seed=2)
    correct, rescored = _ncm_correct(f, ep, "gather", 1 << 20)
    assert 0 < rescored < 0.01 * 75 * len(ep)
    assert np.array_equal(correct / 75, ncm_accuracy_loop(features, labels, ep, center=center))


def _tied_queries(n=300, dim=8, eps=1e-10, seed=0):
    """Two one-shot ways ``a`` and ``b`` and queries on their bisector nudged by ``±eps``
    towards one of them: float64 tells which (the sign of the nudge), float32 cannot."""
    g = np.random.default_rng(seed)
    a, b = _unit(g.standard_normal((2, dim)))
    sign = g.choice([-1.0, 1.0], size=2 * n)
    queries = _unit((a + b)[None] + (sign * eps)[:, None] * (a - b)[None])
    features = np.vstack([a, b, queries])
    labels = np.concatenate([[0, 1], np.zeros(n, int), np.ones(n, int)])
    rows = np.arange(n)
    episodes = Episodes(
        np.tile([0, 1], (n, 1)),
        np.tile(np.array([[[0], [1]]]), (n, 1, 1)),
        np.stack([2 + rows, 2 + n + rows], axis=1)[:, :, None],
    )
    nearest = np.where(sign > 0, 0, 1)  # q·a − q·b = 2·eps·sign·(1 − a·b)
    expected = ((nearest[:n] == 0).astype(int) + (nearest[n:] == 1)) / 2
    return features, labels, episodes, expected


@pytest.mark.parametrize("path", ["gram", "gather"])
def test_the_guard_decides_what_float32_cannot(path):
    features, labels, ep, expected = _tied_queries()
    loop = ncm_accuracy_loop(features, labels, ep)
    assert np.array_equal(loop, expected)  # float64 resolves every nudge
    f = prepare_features(features)
    alone, _ = _ncm_correct(f, ep, path, 1 << 20, tol=-1.0)  # no query is rescored
    assert not np.array_equal(alone / 2, loop)  # float32 alone gets some wrong
    correct, rescored = _ncm_correct(f, ep, path, 1 << 20)
    assert rescored == 2 * len(ep)
    assert np.array_equal(correct / 2, loop)
    assert np.array_equal(ncm_accuracy(features, labels, ep, path=path), loop)


def test_rescoring_every_query_equals_the_loop():
    features, labels = bank(dim=48)
    center = features.mean(0)
    ep = sample_episodes(labels, 5, 5, 15, 400, seed=1)
    f = prepare_features(features, center)
    correct, rescored = _ncm_correct(f, ep, "gather", 1 << 20, tol=math.inf)
    assert rescored == 75 * len(ep)
    assert np.array_equal(correct / 75, ncm_accuracy_loop(features, labels, ep, center=center))


def test_rescoring_repeats_the_loops_arithmetic_bit_for_bit():
    features, labels = bank(dim=40)
    f = prepare_features(features, features.mean(0))
    ep = sample_episodes(labels, 5, 5, 15, 60, seed=0)
    loop = []
    for e in range(len(ep)):  # as ncm_accuracy_loop computes them
        means = f[torch.from_numpy(ep.support[e])].mean(1)
        queries = f[torch.from_numpy(ep.query[e]).reshape(-1)]
        loop.append(((queries[:, None, :] - means[None, :, :]) ** 2).sum(-1))
    support = np.repeat(ep.support, 75, axis=0)
    batched = _reference_distances(f, support, ep.query.reshape(-1))
    assert torch.equal(batched.reshape(len(ep), 75, 5), torch.stack(loop))


# -- the error bound --------------------------------------------------------------------


def _all_scores(scores):
    return np.concatenate([score for _, score in scores])


@pytest.mark.parametrize("shots", [1, 5])
def test_float32_scores_stay_within_the_error_bound(shots):
    g = np.random.default_rng(3)
    dim = 300
    spread, labels = bank(dim=dim, spread=0.4)
    # rows all near one direction: every product positive, rounding errors pile up
    aligned = (1 + 1e-3 * g.standard_normal((len(labels), dim))).astype(np.float32)
    ep = sample_episodes(labels, 5, shots, 15, 300, seed=0)
    bound = score_error_bound(dim, shots)
    for features, center in ((spread, spread.mean(0)), (aligned, None)):
        f = prepare_features(features, center).numpy()
        for scores in (_gather_scores, _gram_scores):
            exact = _all_scores(scores(f, ep, 1 << 20))
            rounded = _all_scores(scores(f.astype(np.float32), ep, 1 << 20))
            error = np.abs(rounded - exact).max()
            assert 0 < error <= bound, (scores.__name__, error, bound)


def test_the_margin_tolerance_grows_with_width_and_shots():
    assert margin_tolerance(64, 1) < margin_tolerance(384, 1) < margin_tolerance(384, 5)
    assert margin_tolerance(384, 5) > 2 * score_error_bound(384, 5)
    assert margin_tolerance(384, 5) < 1e-3  # still far below the gaps NCM usually sees


# -- the cost model ---------------------------------------------------------------------


def test_the_cost_model_gathers_for_large_banks_and_builds_the_gram_for_small_wide_ones():
    big = plan_scoring(12_000, 64, 5, 5, 15, 10_000)
    assert big.path == "gather" and big.seconds["gram"] > 3 * big.seconds["gather"]
    assert plan_scoring(6_000, 384, 5, 1, 15, 10_000).path == "gather"
    assert plan_scoring(1_200, 768, 5, 1, 15, 10_000).path == "gram"
    assert plan_scoring(1_200, 768, 5, 1, 15, 100).path == "gather"  # too few to repay G
    capped = plan_scoring(1_200, 768, 5, 1, 15, 10_000, max_gram_bytes=4 * 1_200**2 - 1)
    assert capped.path == "gather" and capped.seconds["gram"] == math.inf


def test_a_path_is_checked():
    features, labels = bank(classes=6, per_class=20)
    ep = sample_episodes(labels, 5, 1, 5, 10, seed=0)
    with pytest.raises(ValueError, match="above max_gram_bytes"):
        ncm_accuracy(features, labels, ep, path="gram", max_gram_bytes=1000)
    with pytest.raises(ValueError, match="path must be 'auto', 'gram' or 'gather'"):
        ncm_accuracy(features, labels, ep, path="fast")


# -- preparing features -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prepared_features_are_unchanged_and_leave_the_input_alone(dtype):
    features, _ = bank(dim=32)
    raw = torch.from_numpy(features).to(dtype)
    kept = raw.clone()
    center = raw.double().mean(0)
    for c in (center, None):
        assert torch.equal(prepare_features(raw, c), prepare_features_float64(raw, c))
    assert torch.equal(raw, kept)  # the in-place steps work on a copy


def test_infinite_and_overflowing_features_are_refused():
    features, labels = bank(classes=6, per_class=20, dim=8)
    ep = sample_episodes(labels, 5, 1, 5, 10, seed=0)
    bad = features.copy()
    bad[[3, 9], 1] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite values in 2 of 120 rows.*row 3"):
        ncm_accuracy(bad, labels, ep)
    huge = features.astype(np.float64)
    huge[5] = 1e200
    with pytest.raises(ValueError, match="too large"):
        ncm_accuracy(huge, labels, ep)


# -- drawing ----------------------------------------------------------------------------

# sha256 of draws made before the drawing was sped up: the same arguments, the same episodes
DRAWS = [
    (
        (20, 600),
        5,
        5,
        15,
        2500,
        0,
        "6d1e839f8cae61ed04636ff1f86d955803e55b7d9a489f103516a48f294f0f7f",
    ),
    (
        (20, 600),
        5,
        1,
        15,
        1200,
        3,
        "b90e56e83efddc2b5326f3c9f16e0ad0eddc7fc6fa56d84dcb068d860d6d10ff",
    ),
    (None, 5, 1, 15, 1500, 7, "7a2128a607f87373d38fa8696f5999b7d02e1a18ad9c819d2cde9d6ce5ca744e"),
    ((6, 4), 3, 2, 2, 999, 1, "2407ebacdc5a045c2a4e1f97de662ba9edaf2a51b78100265d1dd8f6f624b937"),
]


def _draw_labels(shape):
    if shape is None:  # classes of unequal sizes
        return np.concatenate(
            [np.repeat(np.arange(12), 25), np.repeat([12, 13, 14], [16, 300, 41])]
        )
    labels = np.repeat(np.arange(shape[0]), shape[1])
    return labels if shape[1] != 4 else labels[::-1].copy()


@pytest.mark.parametrize("cells", [fewshot._FLOYD_BITMAP_CELLS, 0])
def test_draws_are_those_made_before(monkeypatch, cells):
    monkeypatch.setattr(fewshot, "_FLOYD_BITMAP_CELLS", cells)  # 0: compare, no bitmap
    for shape, ways, shots, queries, n, seed, sha in DRAWS:
        ep = sample_episodes(_draw_labels(shape), ways, shots, queries, n, seed)
        assert ep.sha256() == sha, (shape, shots, cells)


@pytest.mark.parametrize("sizes", [np.full(3000, 600), np.array([40, 17, 300, 16] * 500)])
@pytest.mark.parametrize("cells", [fewshot._FLOYD_BITMAP_CELLS, 0])
def test_floyd_draws_equal_the_pairwise_comparison(monkeypatch, sizes, cells):
    monkeypatch.setattr(fewshot, "_FLOYD_BITMAP_CELLS", cells)
    for k in (1, 7, 16):
        fast = fewshot._floyd_subsets(np.random.default_rng(k), sizes, k)
        slow = floyd_subsets_by_comparison(np.random.default_rng(k), sizes, k)
        assert np.array_equal(fast, slow)

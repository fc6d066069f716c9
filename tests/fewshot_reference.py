"""The few-shot code as it was before the float32 scorer: the float64 batched NCM scorer
(Gram and gather paths), its feature preparation, and Floyd's draw with pairwise
comparisons. Kept word for word as references that today's code must match bit for bit
(tests) and is timed against (``benchmarks/bench_fewshot.py``).

Also the first accuracy estimate (``est_acc_*`` of fewshot records made before the
calibrated one): a Gaussian model that ignores the unit sphere, with plug-in distances.
Kept word for word (renamed) so its bias stays reproducible (tests,
``benchmarks/bench_estimate.py``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from kdbench.fewshot import (
    ArrayLike,
    Episodes,
    _as_labels,
    _check_episodes,
    prepare_features,
)
from kdbench.fewshot_estimate import (
    _bartlett,
)
from kdbench.seeding import rng


def floyd_subsets_by_comparison(g: np.random.Generator, sizes: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct positions in ``[0, sizes[r])`` per row ``r``, uniformly chosen and in
    random order (Floyd's algorithm, vectorised over rows, then a shuffle)."""
    rows = len(sizes)
    chosen = np.empty((rows, k), dtype=np.int64)
    for i in range(k):
        top = sizes - k + i  # each row's next candidate, never chosen before
        pick = g.integers(0, top + 1)
        taken = (chosen[:, :i] == pick[:, None]).any(axis=1)
        chosen[:, i] = np.where(taken, top, pick)
    order = g.random((rows, k)).argsort(axis=1)
    return np.take_along_axis(chosen, order, axis=1)


def prepare_features_float64(features, center=None) -> torch.Tensor:
    """Features as float64, centred on ``center`` and L2-normalised row by row."""
    f = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    bad = ~torch.isfinite(f).all(dim=1)
    if bool(bad.any()):
        raise ValueError("features contain NaN or infinite values")
    f = f.detach().cpu().to(torch.float64)
    if center is not None:
        c = torch.as_tensor(
            center.detach().cpu().numpy() if isinstance(center, torch.Tensor) else center,
            dtype=torch.float64,
        ).reshape(-1)
        f = f - c
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _count_correct(score: torch.Tensor, w: int, q: int) -> torch.Tensor:
    truth = torch.arange(w).repeat_interleave(q)
    return (score.argmin(-1) == truth).sum(-1)


def _ncm_correct_gram(f: torch.Tensor, episodes: Episodes, chunk_bytes: int) -> np.ndarray:
    n = f.shape[0]
    w, s, q = episodes.ways, episodes.shots, episodes.queries
    flat = (f @ f.T).reshape(-1)  # G = F Fᵀ, once
    per_episode = (w * q * w * s + w * s * s) * 16  # gathered values and their indices
    step = max(1, chunk_bytes // per_episode)
    index = torch.int32 if n * n < 2**31 else torch.int64  # int32 arithmetic is far faster
    out = np.empty(len(episodes), dtype=np.int64)
    for start in range(0, len(episodes), step):
        sup = torch.from_numpy(episodes.support[start : start + step]).to(index)  # (b, W, S)
        qry = torch.from_numpy(episodes.query[start : start + step]).to(index)  # (b, W, Q)
        b = sup.shape[0]
        pairs = (qry.reshape(b, w * q, 1) * n + sup.reshape(b, 1, w * s)).reshape(-1)
        dots = flat.index_select(0, pairs).reshape(b, w * q, w, s).sum(-1)  # S·(q·mean)
        blocks = (sup.reshape(b, w, s, 1) * n + sup.reshape(b, w, 1, s)).reshape(-1)
        norms = flat.index_select(0, blocks).reshape(b, w, s * s).sum(-1)  # S²·||mean||²
        # ||q − m||² = ||q||² − 2 q·m + ||m||²; ||q||² is the same for every way
        score = norms[:, None, :] / (s * s) - 2 * dots / s
        out[start : start + b] = _count_correct(score, w, q).numpy()
    return out


def _ncm_correct_gather(f: torch.Tensor, episodes: Episodes, chunk_bytes: int) -> np.ndarray:
    w, s, q = episodes.ways, episodes.shots, episodes.queries
    d = f.shape[1]
    step = max(1, chunk_bytes // (w * (s + q) * d * 8 * 2))
    out = np.empty(len(episodes), dtype=np.int64)
    for start in range(0, len(episodes), step):
        sup = torch.from_numpy(episodes.support[start : start + step])
        qry = torch.from_numpy(episodes.query[start : start + step])
        b = sup.shape[0]
        means = f.index_select(0, sup.reshape(-1)).reshape(b, w, s, d).mean(2)  # (b, W, D)
        fq = f.index_select(0, qry.reshape(-1)).reshape(b, w * q, d)
        score = (means * means).sum(-1)[:, None, :] - 2 * torch.bmm(fq, means.transpose(1, 2))
        out[start : start + b] = _count_correct(score, w, q).numpy()
    return out


def batched_float64_ncm_accuracy(
    features,
    labels,
    episodes: Episodes,
    *,
    center=None,
    max_gram_bytes: int = 2 * 1024**3,
    chunk_bytes: int = 64 * 1024**2,
) -> np.ndarray:
    """Per-episode NCM accuracy, all in float64: from the Gram matrix when it fits in
    ``max_gram_bytes``, else from each chunk's gathered episode features."""
    labels = _as_labels(labels)
    f = prepare_features_float64(features, center)
    _check_episodes(labels, f.shape[0], episodes)
    n = f.shape[0]
    if n * n * 8 <= max_gram_bytes:
        correct = _ncm_correct_gram(f, episodes, chunk_bytes)
    else:
        correct = _ncm_correct_gather(f, episodes, chunk_bytes)
    return correct / (episodes.ways * episodes.queries)


# -- the first accuracy estimate ---------------------------------------------------------


def embed_distances_v1(d2: torch.Tensor) -> torch.Tensor:
    """Points (..., W, W-1) whose squared distances are the PSD part of ``d2`` (..., W, W)
    (classical multidimensional scaling, negative eigenvalues clipped)."""
    w = d2.shape[-1]
    j = torch.eye(w, dtype=d2.dtype) - 1.0 / w
    gram = -0.5 * j @ d2 @ j
    values, vectors = torch.linalg.eigh(gram)
    points = vectors * values.clamp_min(0).sqrt()[..., None, :]
    return points[..., 1:]  # the smallest eigenvalue of a centred Gram matrix is ~0


def predicted_accuracy_v1(
    d2: torch.Tensor,
    tau: torch.Tensor,
    shots: int,
    dim: float,
    draws: int,
    g: np.random.Generator,
) -> np.ndarray:
    """Monte Carlo NCM accuracy of ``shots``-shot episodes whose classes are isotropic
    Gaussians in ``dim`` dimensions, with squared distances ``d2`` (b, W, W) between their
    means and total variances ``tau`` (b, W); one query per class per draw."""
    b, w = tau.shape
    r, m = w - 1, 2 * w  # span of the means; support-mean and query noise vectors
    d2 = d2 * (1 - torch.eye(w, dtype=d2.dtype))
    mu = embed_distances_v1(d2).numpy()  # (b, W, r)
    sigma = np.sqrt(tau.numpy() / dim)  # (b, W) per dimension
    scale = np.concatenate([sigma / math.sqrt(shots), sigma], axis=1)  # (b, 2W)
    inside = g.standard_normal((b, draws, m, r)) * scale[:, None, :, None]
    rest = dim - r  # dimensions orthogonal to the means (may be fractional)
    if rest >= m:
        outside = _bartlett(g, (b, draws), m, rest)
    else:  # fewer dimensions than noise vectors: draw them plainly
        outside = g.standard_normal((b, draws, m, max(0, round(rest))))
    outside = outside * scale[:, None, :, None]
    centres = np.concatenate([mu, mu], axis=1)[:, None]  # (b, 1, 2W, r)
    points = np.concatenate([centres + inside, outside], axis=-1)
    est, queries = points[:, :, :w], points[:, :, w:]  # estimated means, queries
    dist = ((queries[:, :, :, None, :] - est[:, :, None, :, :]) ** 2).sum(-1)
    return (dist.argmin(-1) == np.arange(w)).mean((1, 2))


def gaussian_estimate_v1(
    features: ArrayLike,
    labels: ArrayLike,
    episodes: Episodes,
    *,
    center: ArrayLike | None = None,
    within_variance: float | None = None,
    dim: float | None = None,
    draws: int = 16,
    seed: int = 0,
    chunk: int = 1000,
) -> np.ndarray:
    """Per-episode NCM accuracy predicted without the labels of the queries, from a
    Gaussian model of the classes and an unbiased estimate of the squared distances between
    their means (after Bendou et al., "A statistical model for predicting generalization in
    few-shot classification", arXiv 2212.06461). Returns fractions in [0, 1].

    Model: in the prepared feature space (centred on ``center``, L2-normalised) class ``c``
    is ``N(μ_c, σ_c² I)`` in ``dim`` dimensions, with total variance ``τ_c = dim · σ_c²``.
    ``dim`` defaults to the feature width; real features scatter in far fewer directions,
    and the participation ratio of the base classes' within-class covariance
    (:func:`within_class_statistics`) is the better value. From an episode's support
    (``S`` shots of each of ``W`` classes):

    * ``m̂_c``, the support mean of class ``c``;
    * ``τ̂_c = Σ_s ||x_s − m̂_c||² / (S − 1)``, unbiased for ``τ_c`` whatever the
      covariance, when ``S ≥ 2``. One shot shows no within-class spread: ``τ`` is then
      ``within_variance`` when given (e.g. the base classes'), else estimated from the
      episode's queries *pooled, without their labels*: with ``V_q`` the total sample
      variance of the ``n = W·Q`` queries and ``V_s`` that of the support means,
      ``E V_q = τ + a·B`` and ``E V_s = B + τ/S`` (``B`` the spread of the class means,
      ``a = Q(W−1)/(n−1)``), so ``τ̂ = (V_q − a·V_s) / (1 − a/S)``, floored at ``V_q/10``;
    * the unbiased squared distance between the true class means,
      ``Δ̂²_ab = ||m̂_a − m̂_b||² − τ̂_a/S − τ̂_b/S``, since
      ``E||m̂_a − m̂_b||² = ||μ_a − μ_b||² + τ_a/S + τ_b/S``.

    The prediction is the accuracy of NCM with ``S`` fresh shots and fresh queries from
    classes whose means sit at the distances ``Δ̂²`` (placed by classical scaling; the
    non-Euclidean part of a noisy ``Δ̂²`` is clipped) with variances ``τ̂``: Monte Carlo
    with ``draws`` draws of one query per class per episode. Noise orthogonal to the class
    means enters NCM only through inner products, so it is drawn through Bartlett's
    decomposition: a draw costs ``O(W²)`` numbers whatever ``dim`` is.

    The per-episode prediction is noisy (one support set says little about its classes)
    and, accuracy being concave in the distances, biased low for one shot; its mean over
    many episodes is what is worth comparing with the measurement.
    """
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    _check_episodes(labels, f.shape[0], episodes, query_labels=False)
    w, s, nq = episodes.ways, episodes.shots, episodes.queries
    d = float(dim) if dim is not None else float(f.shape[1])
    if not d >= 1:
        raise ValueError(f"dim must be at least 1, got {dim!r}")
    if s == 1 and within_variance is not None and not within_variance > 0:
        raise ValueError(f"within_variance must be positive, got {within_variance!r}")
    out = np.empty(len(episodes))
    for c, start in enumerate(range(0, len(episodes), chunk)):
        sup = torch.from_numpy(episodes.support[start : start + chunk])
        b = sup.shape[0]
        x = f[sup.reshape(-1)].reshape(b, w, s, -1)
        means = x.mean(2)  # (b, W, D)
        if s >= 2:
            tau = ((x - means[:, :, None]) ** 2).sum((2, 3)) / (s - 1)  # (b, W)
        elif within_variance is not None:
            tau = torch.full((b, w), float(within_variance), dtype=f.dtype)
        else:
            qry = torch.from_numpy(episodes.query[start : start + chunk])
            xq = f[qry.reshape(-1)].reshape(b, w * nq, -1)  # pooled: labels unused
            n = w * nq
            v_q = ((xq - xq.mean(1, keepdim=True)) ** 2).sum((1, 2)) / (n - 1)
            v_s = ((means - means.mean(1, keepdim=True)) ** 2).sum((1, 2)) / (w - 1)
            a = nq * (w - 1) / (n - 1)
            tau = ((v_q - a * v_s) / (1 - a / s)).clamp_min(0.1 * v_q)[:, None].expand(b, w)
        d2 = ((means[:, :, None] - means[:, None, :]) ** 2).sum(-1)
        d2 = d2 - (tau[:, :, None] + tau[:, None, :]) / s
        g = rng(seed, "fewshot-estimate", w, s, c)
        out[start : start + b] = predicted_accuracy_v1(d2, tau, s, d, draws, g)
    return out

"""Few-shot accuracy predicted without reading a query label: a Gaussian model of the
classes fitted to each episode's support set (:func:`estimate_accuracy`, experimental), and
leave-one-out on the support set (:func:`loo_accuracy`), the baseline it must beat.

The ``fewshot`` protocol reports both beside the measured accuracies
(``est_acc_<k>shot``, ``loo_acc_5shot``); the episodes and features are those of
:mod:`kdbench.fewshot`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kdbench.fewshot import (
    ArrayLike,
    Episodes,
    _as_labels,
    _check_episodes,
    prepare_features,
)
from kdbench.phases import in_phase
from kdbench.seeding import rng


@dataclass(frozen=True)
class WithinClass:
    """How the features of one class scatter around its mean, pooled over classes."""

    variance: float
    """Total variance ``tr(Σ)``: the mean squared distance to the class mean (unbiased)."""
    effective_dim: float
    """Participation ratio ``tr(Σ)² / tr(Σ²)`` of the pooled within-class covariance: how
    many dimensions the scatter really spans (the feature width if it were isotropic)."""
    class_dim: float
    """Participation ratio of a single class, ``Σ_c tr(Σ_c)² / Σ_c tr(Σ_c²)`` over the
    classes of at least three images (each ``tr(Σ_c²)`` estimated without bias): how many
    dimensions one class scatters in. Classes vary in different directions, so it is below
    :attr:`effective_dim`, and it is the dimension :func:`estimate_accuracy` wants."""


def _class_dim(residuals: torch.Tensor, inverse: np.ndarray, counts: np.ndarray) -> float:
    """:attr:`WithinClass.class_dim` from the rows' residuals to their class means."""
    numerator = denominator = 0.0
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    for c in np.flatnonzero(counts >= 3):
        n = int(counts[c])
        r = residuals[torch.from_numpy(order[starts[c] : starts[c + 1]])]
        small = r @ r.T if n < r.shape[1] else r.T @ r  # same nonzero spectrum
        trace = float(torch.trace(small)) / (n - 1)
        square = float((small * small).sum()) / (n - 1) ** 2  # tr(S²)
        # unbiased tr(Σ²) of a Gaussian sample: (n−1)²/((n−2)(n+1))·(tr S² − (tr S)²/(n−1))
        unbiased = (n - 1) ** 2 / ((n - 2) * (n + 1)) * (square - trace**2 / (n - 1))
        numerator += trace**2
        denominator += max(unbiased, trace**2 / r.shape[1])  # at most the width
    return numerator / denominator if denominator > 0 else math.nan


@in_phase("evaluation")
def within_class_statistics(
    features: ArrayLike, labels: ArrayLike, *, center: ArrayLike | None = None
) -> WithinClass:
    """Within-class scatter of prepared features (see :func:`prepare_features`), pooled
    over classes: ``Σ = Σ_c Σ_i (x_i − x̄_c)(x_i − x̄_c)ᵀ / (N − C)``, and the dimension of a
    single class's scatter. Computed on the base classes it gives :func:`estimate_accuracy`
    the ``within_variance`` and ``dim`` of a backbone's classes without looking at any
    novel label."""
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    if labels.shape[0] != f.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {f.shape[0]} feature rows")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if f.shape[0] - len(counts) < 1:
        raise ValueError("within_class_statistics needs a class with at least two images")
    inverse = inverse.reshape(-1)
    inv = torch.from_numpy(inverse)
    sums = torch.zeros(len(counts), f.shape[1], dtype=f.dtype).index_add_(0, inv, f)
    residuals = f - (sums / torch.from_numpy(counts).to(f.dtype)[:, None])[inv]
    cov = residuals.T @ residuals / (f.shape[0] - len(counts))
    trace = float(torch.trace(cov))
    if trace <= 0:
        raise ValueError("the features do not vary within classes; cannot model them")
    effective = trace**2 / float((cov * cov).sum())
    one_class = _class_dim(residuals, inverse, counts)
    return WithinClass(trace, effective, one_class if one_class == one_class else effective)


def _gram_points(gram: np.ndarray) -> np.ndarray:
    """Points (..., W, W) whose Gram matrix is the PSD part of ``gram`` (..., W, W): the
    eigenvectors scaled by the square roots of the eigenvalues, negative ones clipped."""
    values, vectors = np.linalg.eigh(gram)
    return vectors * np.sqrt(np.clip(values, 0.0, None))[..., None, :]


def _bartlett(g: np.random.Generator, shape: tuple[int, ...], m: int, dof: float) -> np.ndarray:
    """Coordinates (..., m vectors, m) of ``m`` independent standard Gaussian vectors of a
    ``dof``-dimensional space in an orthonormal basis of their span (the R of their QR
    decomposition, transposed: Bartlett's decomposition). Inner products and norms, all
    that NCM reads, are distributed exactly as those of the full vectors."""
    r = np.triu(g.standard_normal((*shape, m, m)), k=1)
    diag = np.sqrt(g.chisquare(dof - np.arange(m), size=(*shape, m)))
    r[..., np.arange(m), np.arange(m)] = diag
    return np.swapaxes(r, -1, -2)


def _fit_classes(
    support: np.ndarray, one_shot_variance: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The model of an episode's classes from its support ``support`` (b, W, S, R): points
    (b, W, W) with the Gram matrix ``Ĝ = M̂·M̂ᵀ − diag(τ̂/S)`` of the class means, and the
    total variances ``τ̂`` (b, W); ``one_shot_variance`` (b, W) stands in for ``τ̂`` when
    ``S = 1``. ``Ĝ`` is unbiased for the Gram matrix of the true means, so every squared
    distance and norm read from it is too."""
    shots = support.shape[2]
    means = support.mean(2)
    if shots >= 2:
        tau = ((support - means[:, :, None]) ** 2).sum((2, 3)) / (shots - 1)
    else:
        assert one_shot_variance is not None, "one shot needs a variance"
        tau = one_shot_variance
    gram = means @ np.swapaxes(means, 1, 2)
    ways = gram.shape[-1]
    gram[:, np.arange(ways), np.arange(ways)] -= tau / shots
    return _gram_points(gram), tau


def _standard_images(
    g: np.random.Generator, b: int, draws: int, m: int, r: int, dim: float
) -> np.ndarray:
    """Standard Gaussian noise (b, draws, m, R) of ``m`` images in ``dim`` dimensions: plain
    in the ``r`` dimensions of the class means, through Bartlett's decomposition in the
    ``dim − r`` orthogonal to them (plainly, rounded, when there are fewer than ``m``)."""
    rest = dim - r  # may be fractional
    inside = g.standard_normal((b, draws, m, r))
    if rest >= m:
        outside = _bartlett(g, (b, draws), m, rest)
    else:
        outside = g.standard_normal((b, draws, m, max(0, round(rest))))
    return np.concatenate([inside, outside], axis=-1)


def _sphere_episodes(
    points: np.ndarray, tau: np.ndarray, shots: int, dim: float, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Episodes whose classes are isotropic Gaussians ``N(μ_c, τ_c/dim · I)`` in ``dim``
    dimensions, every image then projected on the unit sphere as the protocol's features
    are: ``points`` (b, W, r) are the means, ``tau`` (b, W) the total variances, ``noise``
    (b, draws, W·(S+1), R) the standard noise of ``S`` shots per way (way-major), then one
    query per way. Returns the NCM accuracy (b,), averaged over draws, and the support
    images (b, draws, W, S, R)."""
    b, w, r = points.shape
    draws = noise.shape[1]
    sigma = np.sqrt(tau / dim)
    scale = np.concatenate([np.repeat(sigma, shots, axis=1), sigma], axis=1)  # (b, m)
    images = noise * scale[:, None, :, None]
    images[..., :r] += np.concatenate([np.repeat(points, shots, axis=1), points], axis=1)[:, None]
    images /= np.maximum(np.linalg.norm(images, axis=-1, keepdims=True), 1e-12)
    support = images[:, :, : w * shots].reshape(b, draws, w, shots, -1)
    queries = images[:, :, w * shots :]
    means = support.mean(3)
    dist = ((queries[:, :, :, None, :] - means[:, :, None, :, :]) ** 2).sum(-1)
    return (dist.argmin(-1) == np.arange(w)).mean((1, 2)), support


EXTRAPOLATION = (3.0, -3.0, 1.0)
"""Weights of the predictions at 1, 2 and 3 times the support's noise whose sum is the
quadratic extrapolation to no noise (SIMEX): ``3·A₁ − 3·A₂ + A₃``."""


def _one_shot_variance(
    f: torch.Tensor,
    episodes: Episodes,
    means: torch.Tensor,
    start: int,
    chunk: int,
    within_variance: float | None,
) -> torch.Tensor:
    """``τ`` (b, W) for one shot: ``within_variance``, else estimated from the episodes'
    queries pooled without their labels (see :func:`estimate_accuracy`)."""
    b, w = means.shape[:2]
    if within_variance is not None:
        return torch.full((b, w), float(within_variance), dtype=f.dtype)
    nq = episodes.queries
    qry = torch.from_numpy(episodes.query[start : start + chunk])
    xq = f[qry.reshape(-1)].reshape(b, w * nq, -1)  # pooled: labels unused
    n = w * nq
    v_q = ((xq - xq.mean(1, keepdim=True)) ** 2).sum((1, 2)) / (n - 1)
    v_s = ((means - means.mean(1, keepdim=True)) ** 2).sum((1, 2)) / (w - 1)
    a = nq * (w - 1) / (n - 1)
    return ((v_q - a * v_s) / (1 - a)).clamp_min(0.1 * v_q)[:, None].expand(b, w)


@in_phase("evaluation")
def estimate_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    episodes: Episodes,
    *,
    center: ArrayLike | None = None,
    within_variance: float | None = None,
    dim: float | None = None,
    draws: int = 16,
    seed: int = 0,
    chunk: int = 250,
) -> np.ndarray:
    """Per-episode NCM accuracy predicted from the support set alone, without the labels
    of the queries (after Bendou et al., "A statistical model for predicting
    generalization in few-shot classification", arXiv 2212.06461). Returns fractions;
    with five shots an episode's value is an extrapolation and may leave [0, 1] slightly.

    Model: in the prepared feature space (centred on ``center``, L2-normalised) the images
    of class ``c`` are ``N(μ_c, τ_c/dim · I)`` in ``dim`` dimensions *projected on the unit
    sphere*, as the features are; ``μ_c`` and ``τ_c`` are the mean and total variance of
    the class's prepared features. ``dim`` defaults to the feature width; real classes
    scatter in far fewer directions, and :attr:`WithinClass.class_dim` of the base classes
    is the value to pass. From an episode's support (``S`` shots of each of ``W`` classes):

    * ``τ̂_c = Σ_s ||x_s − m̂_c||² / (S − 1)``, unbiased, when ``S ≥ 2``. One shot shows no
      within-class spread: ``τ`` is then ``within_variance`` when given (e.g. the base
      classes'), else estimated from the episode's queries *pooled, without their labels*:
      with ``V_q`` the total sample variance of the ``n = W·Q`` queries and ``V_s`` that of
      the support means, ``E V_q = τ + a·B`` and ``E V_s = B + τ`` (``B`` the spread of the
      class means, ``a = Q(W−1)/(n−1)``), so ``τ̂ = (V_q − a·V_s) / (1 − a)``, floored at
      ``V_q/10``;
    * the Gram matrix of the class means, ``Ĝ = M̂·M̂ᵀ − diag(τ̂/S)`` (``M̂`` the support
      means), unbiased: so are the squared distances between means and their norms read
      from it. Its PSD part places the means.

    The prediction is the accuracy of NCM on fresh episodes drawn from that model, by Monte
    Carlo with ``draws`` draws of one query per class; noise orthogonal to the means is
    drawn through Bartlett's decomposition, so a draw costs ``O(W²·S²)`` numbers whatever
    ``dim`` is. Below ``W`` dimensions the model has no room for the means' span: the noise
    then fills the ``W`` dimensions of the means at ``τ/dim`` each, more than ``τ`` in all,
    and the prediction is least reliable.

    Plugging a noisy ``Ĝ`` into a concave accuracy biases the prediction (low at five
    shots). With ``S ≥ 2`` the bias is removed by simulation-extrapolation: the model is
    refitted on a support set simulated from it (twice the noise), and again (three
    times), and the three predictions are extrapolated to no noise
    (:data:`EXTRAPOLATION`). With one shot ``τ`` is fixed and the refits mostly measure the
    clipping of an indefinite ``Ĝ``, not the concavity, so no extrapolation is made.

    A single episode's prediction is noisy; the mean over episodes is the estimate.
    ``benchmarks/bench_estimate.py`` measures its calibration.
    """
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    _check_episodes(labels, f.shape[0], episodes, query_labels=False)
    w, s = episodes.ways, episodes.shots
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
        one_shot = None
        if s == 1:
            variance = _one_shot_variance(f, episodes, x[:, :, 0], start, chunk, within_variance)
            one_shot = variance.numpy()
        g = rng(seed, "fewshot-estimate", w, s, c)
        points, tau = _fit_classes(x.numpy(), one_shot)
        weights = EXTRAPOLATION if s >= 2 else (1.0,)
        # the same noise for every level's prediction (common random numbers), and a
        # fresh support set for each refit
        noise = _standard_images(g, b, draws + len(weights) - 1, w * (s + 1), w, d)
        predicted = np.zeros(b)
        for level, weight in enumerate(weights):
            if level:
                refit = _sphere_episodes(points, tau, s, d, noise[:, draws + level - 1, None])
                points, tau = _fit_classes(refit[1][:, 0], one_shot)
            predicted += weight * _sphere_episodes(points, tau, s, d, noise[:, :draws])[0]
        out[start : start + b] = predicted
    return out


@in_phase("evaluation")
def loo_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    episodes: Episodes,
    *,
    center: ArrayLike | None = None,
    chunk_bytes: int = 16 * 1024**2,
) -> np.ndarray:
    """Per-episode leave-one-out NCM accuracy on the support set (fraction in [0, 1]),
    the label-free baseline that Bendou et al. compare their estimate with: each support
    image is classified by the nearest class mean, its own class's mean computed from the
    other ``S − 1`` shots. Needs ``S ≥ 2``; reads no query. Features are prepared as by
    :func:`ncm_accuracy`; ties go to the lower way."""
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    _check_episodes(labels, f.shape[0], episodes, query_labels=False)
    w, s = episodes.ways, episodes.shots
    if s < 2:
        raise ValueError(f"leave-one-out needs at least 2 shots per class, got {s}")
    step = max(1, chunk_bytes // (w * s * f.shape[1] * 8))
    out = np.empty(len(episodes))
    ways = torch.arange(w)
    for start in range(0, len(episodes), step):
        sup = torch.from_numpy(episodes.support[start : start + step])
        b = sup.shape[0]
        x = f[sup.reshape(-1)].reshape(b, w * s, -1)
        totals = x.view(b, w, s, -1).sum(2)  # (b, W, D)
        means = totals / s
        # ||x − m||² against every way's full mean, then the own way's mean without x
        dist = (x * x).sum(-1, keepdim=True) - 2 * x @ means.transpose(1, 2)
        dist = dist.add_((means * means).sum(-1)[:, None, :]).view(b, w, s, w)
        own = s * x.view(b, w, s, -1) - totals[:, :, None]  # (S − 1)·(x − own mean)
        dist[:, ways, :, ways] = ((own * own).sum(-1) / (s - 1) ** 2).permute(1, 0, 2)
        out[start : start + b] = (dist.argmin(-1) == ways[:, None]).double().mean((1, 2)).numpy()
    return out

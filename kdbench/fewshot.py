"""Few-shot episodes and nearest-class-mean (NCM) scoring over frozen features.

Usable on features from anywhere: a user with a feature file of their own can draw episodes
and score them the way the ``fewshot`` protocol does::

    from kdbench.fewshot import sample_episodes, ncm_accuracy, summarize

    episodes = sample_episodes(labels, ways=5, shots=1, queries=15, n_episodes=10_000, seed=0)
    acc = ncm_accuracy(features, labels, episodes, center=base_features.mean(0))
    mean, ci95 = summarize(acc)          # in %, mean ± 1.96·std/sqrt(n) over episodes

Features are centred on ``center`` (the mean of the base-class features, as SimpleShot and
EASY do) and L2-normalised, then every query goes to the class whose support mean is
nearest. Scoring is tensor work over all episodes in chunks: with normalised features a
Gram matrix ``G = F·Fᵀ`` computed once turns NCM into index arithmetic (a query's dot
product with a class mean is a mean of ``G`` entries, a class mean's squared norm a mean of
a block of ``G``), so the feature bank is never copied per episode.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.metrics.stats import mean_ci95
from kdbench.seeding import rng

EPISODE_CHUNK = 1000
"""Episodes are drawn in chunks of this many, each from its own named random stream, so the
first ``n`` episodes of a draw do not depend on how many were drawn in total."""

DEFAULT_MAX_GRAM_BYTES = 2 * 1024**3
"""Above this size the N x N Gram matrix is not built; scoring then gathers each chunk's
episode features (never the whole bank) and multiplies them directly."""

ArrayLike = Any  # numpy array, torch tensor or sequence


@dataclass(frozen=True)
class Episodes:
    """A batch of N-way K-shot episodes as index arrays into a feature matrix.

    ``classes[e, w]`` is the label of way ``w`` of episode ``e``; ``support[e, w, k]`` and
    ``query[e, w, q]`` index rows of the features (and labels) the episodes were drawn
    from. Query ``(e, w, q)`` belongs to way ``w``.
    """

    classes: np.ndarray  # (E, W) labels
    support: np.ndarray  # (E, W, S) int64 row indices
    query: np.ndarray  # (E, W, Q) int64 row indices

    def __post_init__(self) -> None:
        e, w = self.classes.shape
        if self.support.shape[:2] != (e, w) or self.query.shape[:2] != (e, w):
            raise ValueError(
                f"episode arrays disagree: classes {self.classes.shape}, support "
                f"{self.support.shape}, query {self.query.shape}; expected (E, W), (E, W, S) "
                "and (E, W, Q)"
            )

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    @property
    def ways(self) -> int:
        return int(self.classes.shape[1])

    @property
    def shots(self) -> int:
        return int(self.support.shape[2])

    @property
    def queries(self) -> int:
        return int(self.query.shape[2])

    def __getitem__(self, index: slice) -> Episodes:
        if not isinstance(index, slice):
            raise TypeError("episodes are sliced with a slice, e.g. episodes[:100]")
        return Episodes(self.classes[index], self.support[index], self.query[index])

    def sha256(self) -> str:
        """sha256 of the episodes' shape and indices: equal hashes, identical episodes."""
        digest = hashlib.sha256()
        digest.update(f"episodes|{len(self)}|{self.ways}|{self.shots}|{self.queries}|".encode())
        classes = self.classes
        if classes.dtype.kind in "iub":
            digest.update(np.ascontiguousarray(classes, dtype="<i8").tobytes())
        else:  # labels that are not integers (e.g. class names)
            digest.update("\x1f".join(map(str, classes.reshape(-1))).encode())
        for array in (self.support, self.query):
            digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        """Write the episodes to an ``.npz`` file (see :meth:`load`)."""
        np.savez_compressed(path, classes=self.classes, support=self.support, query=self.query)

    @classmethod
    def load(cls, path: str | Path) -> Episodes:
        """Read episodes written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            missing = {"classes", "support", "query"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {', '.join(sorted(missing))}; not an episode file")
            return cls(data["classes"], data["support"], data["query"])


# -- drawing ---------------------------------------------------------------------------


def _as_labels(labels: ArrayLike) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    return labels


def _class_name(label: Any, class_names: Sequence[str] | None) -> str:
    if class_names is not None:
        try:
            return f"{class_names[int(label)]!r} (label {label})"
        except (IndexError, TypeError, ValueError):
            pass
    return f"{label!r}" if isinstance(label, str) else f"label {label}"


def _floyd_subsets(g: np.random.Generator, sizes: np.ndarray, k: int) -> np.ndarray:
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


def sample_episodes(
    labels: ArrayLike,
    ways: int,
    shots: int,
    queries: int,
    n_episodes: int,
    seed: int,
    *,
    class_names: Sequence[str] | None = None,
) -> Episodes:
    """Draw ``n_episodes`` ``ways``-way ``shots``-shot episodes with ``queries`` queries
    per class from the rows of ``labels``.

    Each episode picks ``ways`` distinct classes uniformly, then ``shots + queries``
    distinct images of each class uniformly (the first ``shots`` are the support). The
    draw is vectorised and comes from ``kdbench.seeding.rng(seed, "fewshot-episodes", ...)``
    in chunks of :data:`EPISODE_CHUNK`: the same arguments give the same episodes, another
    seed other episodes, and a longer draw starts with the shorter one.

    Every class must have at least ``shots + queries`` images; ``class_names`` (indexed by
    integer label) makes the error name the class.
    """
    labels = _as_labels(labels)
    for name, value, low in (
        ("ways", ways, 2),
        ("shots", shots, 1),
        ("queries", queries, 1),
        ("n_episodes", n_episodes, 1),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < ways:
        raise ValueError(
            f"{ways}-way episodes need at least {ways} classes; the labels have {len(classes)}"
        )
    need = shots + queries
    small = np.flatnonzero(counts < need)
    if small.size:
        listed = ", ".join(
            f"{_class_name(classes[i], class_names)} has {counts[i]}" for i in small[:5]
        )
        more = f" and {small.size - 5} more classes" if small.size > 5 else ""
        raise ValueError(
            f"{shots}-shot episodes with {queries} queries need {need} images per class "
            f"(shots + queries), but {listed}{more}; lower the queries or shots, or give "
            "those classes more images"
        )
    order = np.argsort(labels, kind="stable")  # rows grouped by class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out_c, out_s, out_q = [], [], []
    for chunk in range(-(-n_episodes // EPISODE_CHUNK)):
        b = EPISODE_CHUNK  # whole chunks, cut at the end: a prefix never depends on the total
        g = rng(seed, "fewshot-episodes", ways, shots, queries, chunk)
        picked = g.random((b, len(classes))).argsort(axis=1)[:, :ways]  # (b, W) class ids
        positions = _floyd_subsets(g, counts[picked].reshape(-1), need)  # (b*W, S+Q)
        rows = order[starts[picked].reshape(-1, 1) + positions].reshape(b, ways, need)
        out_c.append(classes[picked])
        out_s.append(rows[:, :, :shots])
        out_q.append(rows[:, :, shots:])
    return Episodes(
        np.concatenate(out_c)[:n_episodes],
        np.ascontiguousarray(np.concatenate(out_s)[:n_episodes]),
        np.ascontiguousarray(np.concatenate(out_q)[:n_episodes]),
    )


# -- checking and preparing features ---------------------------------------------------


def _as_features(features: ArrayLike) -> torch.Tensor:
    f = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if f.ndim != 2:
        raise ValueError(f"features must be a 2-D (images x dimensions) array, got {f.shape}")
    if not f.is_floating_point():
        raise ValueError(f"features must be floating point, got {f.dtype}")
    bad = ~torch.isfinite(f).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise ValueError(
            f"features contain NaN or infinite values in {len(rows)} of {f.shape[0]} rows "
            f"(first: row {int(rows[0])}); refusing to score them. Check the backbone "
            "(a diverged training run?) or the feature file"
        )
    return f


def prepare_features(features: ArrayLike, center: ArrayLike | None = None) -> torch.Tensor:
    """Features as float64, centred on ``center`` (None: not centred) and L2-normalised row
    by row (an all-zero row stays zero). NaN or infinite values are refused."""
    f = _as_features(features).detach().cpu().to(torch.float64)
    if center is not None:
        c = torch.as_tensor(
            center.detach().cpu().numpy() if isinstance(center, torch.Tensor) else center,
            dtype=torch.float64,
        ).reshape(-1)
        if c.shape[0] != f.shape[1]:
            raise ValueError(f"center has {c.shape[0]} dimensions, the features {f.shape[1]}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError("center contains NaN or infinite values; refusing to use it")
        f = f - c
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _check_episodes(
    labels: np.ndarray, n: int, episodes: Episodes, query_labels: bool = True
) -> None:
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} feature rows")
    for name, idx in (("support", episodes.support), ("query", episodes.query)):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(
                f"episode {name} indices reach {int(idx.max())} but there are {n} feature rows; "
                "were the episodes drawn on another feature set?"
            )
    want = episodes.classes[:, :, None]
    right = (labels[episodes.support] == want).all()
    if query_labels:
        right = right and (labels[episodes.query] == want).all()
    if not right:
        raise ValueError(
            "the episodes' images do not carry the labels of their ways; were the episodes "
            "drawn from other labels?"
        )


# -- NCM scoring -----------------------------------------------------------------------


def _count_correct(score: torch.Tensor, w: int, q: int) -> torch.Tensor:
    """Correct queries per episode from scores (b, W·Q, W), lower is nearer (ties go to the
    lower way, as in ``argmin``)."""
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


def ncm_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    episodes: Episodes,
    *,
    center: ArrayLike | None = None,
    max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES,
    chunk_bytes: int = 64 * 1024**2,
) -> np.ndarray:
    """Per-episode NCM accuracy (fraction of queries right, in [0, 1]) of ``episodes``
    drawn on ``labels``, over ``features`` (N x D, one row per label).

    Features are centred on ``center`` and L2-normalised (:func:`prepare_features`); a
    query goes to the way whose support mean is nearest in Euclidean distance (ties to the
    lower way). All episodes are scored as tensor operations in chunks of about
    ``chunk_bytes``: from the Gram matrix of the features when it fits in
    ``max_gram_bytes``, else from the chunk's own episode features. Computation is in
    float64, so the result equals a direct per-episode computation
    (:func:`ncm_accuracy_loop`).
    """
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    _check_episodes(labels, f.shape[0], episodes)
    n = f.shape[0]
    if n * n * 8 <= max_gram_bytes:
        correct = _ncm_correct_gram(f, episodes, chunk_bytes)
    else:
        correct = _ncm_correct_gather(f, episodes, chunk_bytes)
    return correct / (episodes.ways * episodes.queries)


def ncm_accuracy_loop(
    features: ArrayLike, labels: ArrayLike, episodes: Episodes, *, center: ArrayLike | None = None
) -> np.ndarray:
    """:func:`ncm_accuracy` written the straightforward way, one episode at a time: class
    means of the support, squared distances of every query to them, nearest wins. Slow;
    kept as the reference the fast path is checked against (tests, benchmark)."""
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    _check_episodes(labels, f.shape[0], episodes)
    truth = torch.arange(episodes.ways).repeat_interleave(episodes.queries)
    out = np.empty(len(episodes))
    for e in range(len(episodes)):
        means = f[torch.from_numpy(episodes.support[e])].mean(1)  # (W, D)
        queries = f[torch.from_numpy(episodes.query[e]).reshape(-1)]  # (W*Q, D)
        distances = ((queries[:, None, :] - means[None, :, :]) ** 2).sum(-1)
        out[e] = float((distances.argmin(1) == truth).double().mean())
    return out


def summarize(accuracies: ArrayLike) -> tuple[float, float | None]:
    """Mean per-episode accuracy and its 95% CI half-width, both in %:
    ``1.96 · std(ddof=1) / sqrt(n)`` over the ``n`` episodes (Student's t below 30)."""
    return mean_ci95(100.0 * np.asarray(accuracies, dtype=np.float64))


# -- predicted accuracy from a Gaussian model ------------------------------------------


@dataclass(frozen=True)
class WithinClass:
    """How the features of one class scatter around its mean, pooled over classes."""

    variance: float
    """Total variance ``tr(Σ)``: the mean squared distance to the class mean (unbiased)."""
    effective_dim: float
    """Participation ratio ``tr(Σ)² / tr(Σ²)`` of the pooled within-class covariance: how
    many dimensions the scatter really spans (the feature width if it were isotropic)."""


def within_class_statistics(
    features: ArrayLike, labels: ArrayLike, *, center: ArrayLike | None = None
) -> WithinClass:
    """Within-class scatter of prepared features (see :func:`prepare_features`), pooled
    over classes: ``Σ = Σ_c Σ_i (x_i − x̄_c)(x_i − x̄_c)ᵀ / (N − C)``. Computed on the base
    classes it gives :func:`estimate_accuracy` the ``within_variance`` and ``dim`` of a
    backbone's classes without looking at any novel label."""
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    if labels.shape[0] != f.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {f.shape[0]} feature rows")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if f.shape[0] - len(counts) < 1:
        raise ValueError("within_class_statistics needs a class with at least two images")
    inv = torch.from_numpy(inverse.reshape(-1))
    sums = torch.zeros(len(counts), f.shape[1], dtype=f.dtype).index_add_(0, inv, f)
    residuals = f - (sums / torch.from_numpy(counts).to(f.dtype)[:, None])[inv]
    cov = residuals.T @ residuals / (f.shape[0] - len(counts))
    trace = float(torch.trace(cov))
    if trace <= 0:
        raise ValueError("the features do not vary within classes; cannot model them")
    return WithinClass(trace, trace**2 / float((cov * cov).sum()))


def _embed_distances(d2: torch.Tensor) -> torch.Tensor:
    """Points (..., W, W-1) whose squared distances are the PSD part of ``d2`` (..., W, W)
    (classical multidimensional scaling, negative eigenvalues clipped)."""
    w = d2.shape[-1]
    j = torch.eye(w, dtype=d2.dtype) - 1.0 / w
    gram = -0.5 * j @ d2 @ j
    values, vectors = torch.linalg.eigh(gram)
    points = vectors * values.clamp_min(0).sqrt()[..., None, :]
    return points[..., 1:]  # the smallest eigenvalue of a centred Gram matrix is ~0


def _bartlett(g: np.random.Generator, shape: tuple[int, ...], m: int, dof: float) -> np.ndarray:
    """Coordinates (..., m vectors, m) of ``m`` independent standard Gaussian vectors of a
    ``dof``-dimensional space in an orthonormal basis of their span (the R of their QR
    decomposition, transposed: Bartlett's decomposition). Inner products and norms, all
    that NCM reads, are distributed exactly as those of the full vectors."""
    r = np.triu(g.standard_normal((*shape, m, m)), k=1)
    diag = np.sqrt(g.chisquare(dof - np.arange(m), size=(*shape, m)))
    r[..., np.arange(m), np.arange(m)] = diag
    return np.swapaxes(r, -1, -2)


def _predicted_accuracy(
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
    mu = _embed_distances(d2).numpy()  # (b, W, r)
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
        out[start : start + b] = _predicted_accuracy(d2, tau, s, d, draws, g)
    return out

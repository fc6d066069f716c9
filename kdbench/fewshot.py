"""Few-shot episodes and nearest-class-mean (NCM) scoring over frozen features.

Usable on features from anywhere: a user with a feature file of their own can draw episodes
and score them the way the ``fewshot`` protocol does::

    from kdbench.fewshot import sample_episodes, ncm_accuracy, summarize

    episodes = sample_episodes(labels, ways=5, shots=1, queries=15, n_episodes=10_000, seed=0)
    acc = ncm_accuracy(features, labels, episodes, center=base_features.mean(0))
    mean, ci95 = summarize(acc)          # in %, mean ± 1.96·std/sqrt(n) over episodes

Features are centred on ``center`` (the mean of the base-class features, as SimpleShot and
EASY do) and L2-normalised, then every query goes to the class whose support mean is
nearest. Scoring is array work over all episodes in chunks, in float32, along one of two
paths a cost model picks (:func:`plan_scoring`): copy each episode's rows and multiply
them, or build the Gram matrix ``G = F·Fᵀ`` once and read a query's dot product with a
class mean, and a mean's squared norm, as sums of ``G`` entries. Queries whose two nearest
classes are closer than float32 rounding can separate (:func:`margin_tolerance`) are
rescored in float64, so every accuracy equals the one-episode-at-a-time computation
(:func:`ncm_accuracy_loop`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.metrics.stats import mean_ci95
from kdbench.phases import in_phase
from kdbench.seeding import rng

EPISODE_CHUNK = 1000
"""Episodes are drawn in chunks of this many, each from its own named random stream, so the
first ``n`` episodes of a draw do not depend on how many were drawn in total."""

DEFAULT_MAX_GRAM_BYTES = 2 * 1024**3
"""Above this size the N x N float32 Gram matrix is not built; scoring then gathers each
chunk's episode features (never the whole bank) and multiplies them directly."""

DEFAULT_CHUNK_BYTES = 4 * 1024**2
"""Working memory of one chunk of episodes in the float32 stage: small enough to stay in
the caches."""

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


_FLOYD_BITMAP_CELLS = 1 << 24
"""Floyd's draw marks taken positions in a (rows x largest class) bitmap up to this many cells;
beyond it, each pick is compared with the earlier ones instead (same draws, slower)."""


def _floyd_subsets(g: np.random.Generator, sizes: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct positions in ``[0, sizes[r])`` per row ``r``, uniformly chosen and in
    random order (Floyd's algorithm, vectorised over rows, then a shuffle)."""
    rows = len(sizes)
    chosen = np.empty((k, rows), dtype=np.int64)  # one contiguous row per pick
    width = int(sizes.max()) if rows else 0
    uniform = rows > 0 and int(sizes.min()) == width  # one bound: numpy draws the same values
    bitmap = rows * width <= _FLOYD_BITMAP_CELLS
    if bitmap:
        taken = np.zeros(rows * width, dtype=bool)
        base = np.arange(rows, dtype=np.int64) * width
    for i in range(k):
        top = sizes - k + i  # each row's next candidate, never chosen before
        pick = g.integers(0, width - k + i + 1, size=rows) if uniform else g.integers(0, top + 1)
        if bitmap:
            hit = taken[base + pick]
        else:
            hit = np.zeros(rows, dtype=bool)
            for earlier in chosen[:i]:
                hit |= earlier == pick
        chosen[i] = np.where(hit, top, pick)
        if bitmap:
            taken[base + chosen[i]] = True
    order = g.random((rows, k)).argsort(axis=1)
    return np.take_along_axis(chosen.T, order, axis=1)


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
    return f


def _refuse_nonfinite(f: torch.Tensor) -> None:
    bad = ~torch.isfinite(f).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise ValueError(
            f"features contain NaN or infinite values in {len(rows)} of {f.shape[0]} rows "
            f"(first: row {int(rows[0])}); refusing to score them. Check the backbone "
            "(a diverged training run?) or the feature file"
        )


def prepare_features(features: ArrayLike, center: ArrayLike | None = None) -> torch.Tensor:
    """Features as float64, centred on ``center`` (None: not centred) and L2-normalised row
    by row (an all-zero row stays zero). NaN or infinite values are refused."""
    raw = _as_features(features).detach().cpu()
    f = raw.to(torch.float64, copy=True)  # a copy of its own: the steps below work in place
    if center is not None:
        c = torch.as_tensor(
            center.detach().cpu().numpy() if isinstance(center, torch.Tensor) else center,
            dtype=torch.float64,
        ).reshape(-1)
        if c.shape[0] != f.shape[1]:
            raise ValueError(f"center has {c.shape[0]} dimensions, the features {f.shape[1]}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError("center contains NaN or infinite values; refusing to use it")
        f.sub_(c)
    norms = f.norm(dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()):  # a NaN or infinity makes its row's norm one
        _refuse_nonfinite(raw)
        raise ValueError("features too large: a row's squared norm overflows float64")
    return f.div_(norms.clamp_min_(1e-12))


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
#
# Two stages. A float32 stage scores every query against every way of its episode, from the
# Gram matrix of the features or from the episode's own rows (the cost model picks), and
# flags each query whose best two ways are closer than float32 rounding can tell apart. A
# float64 stage rescores only the flagged queries with the arithmetic of ncm_accuracy_loop.
#
# Scores are scaled by the shots S to spare a division: with T_w = Σ_s x_s (S times the
# mean of way w), query q scores  σ_w = q·T_w − ‖T_w‖²/(2S) = S·(‖q‖² − ‖q − m_w‖²)/2
# against way w, so the largest σ is the nearest mean.

PATHS = ("gram", "gather")

_U32 = 2.0**-24  # unit roundoff of float32
_U64 = 2.0**-53  # and of float64
_RESCORE_BYTES = 1024**2  # float64 rows of a batch of rescored queries: small, so serial


def score_error_bound(dim: int, shots: int) -> float:
    """How far a float32 score ``σ`` can be from ``σ`` computed exactly on the float64
    prepared features (unit-norm rows), by either path: ``S·u·(1.5·D + S²/2 + 2S + 4)``
    with ``u = 2⁻²⁴``. It adds up rounding the features to float32 (``u`` each), summing
    ``S`` rows or ``S²`` Gram entries, and ``D``-term dot products summed in any order
    (``D·u`` relative to ``Σ|a_i||b_i| ≤ ‖a‖‖b‖``), times ``1/(1 − (D + S² + 8)·u)`` for the
    second-order terms."""
    s, d = float(shots), float(dim)
    return s * _U32 * (1.5 * d + s * s / 2 + 2 * s + 4) / (1 - (d + s * s + 8) * _U32)


def margin_tolerance(dim: int, shots: int) -> float:
    """The gap between a query's best two float32 scores above which its nearest way is
    proved: twice :func:`score_error_bound`, plus twice the float64 reference's own error
    (``S·u₆₄·4·(D + S + 4)`` in the same units) and the rounding of the comparison. Above it,
    the float32 stage, exact arithmetic and :func:`ncm_accuracy_loop` pick the same way."""
    s, d = float(shots), float(dim)
    reference = s * _U64 * 4 * (d + s + 4)
    return 2 * score_error_bound(dim, shots) + 2 * reference + 4 * s * _U32


# The cost model: seconds of the float32 stage, fitted to timings on a shared 2-core AVX-512
# machine (numpy, one thread). Only speed depends on it: both paths give the same accuracies.
_GATHER_EPISODE = 1.5e-6  # per episode: chunk bookkeeping and decisions
_GATHER_VALUE_CACHED = 0.2e-9  # per feature value gathered (support and query rows)
_GATHER_VALUE = 0.3e-9  # the same once the features outgrow the caches
_GATHER_MAC = 0.03e-9  # per multiply-add of the queries with the ways' sums
_GRAM_ENTRY_BUILT = 0.25e-9  # per Gram entry allocated
_GRAM_BUILD_MAC = 0.016e-9  # per N²·D of F·Fᵀ (a symmetric product: half as many are done)
_GRAM_EPISODE = 2.0e-6  # per episode, as for the gather path
_GRAM_ENTRY_CACHED = 8e-9  # per Gram entry read (index arithmetic, random read, sum)
_GRAM_ENTRY = 13e-9  # the same once the Gram matrix outgrows the caches
_CACHE_BYTES = 32 * 1024**2


@dataclass(frozen=True)
class ScoringPlan:
    """The path :func:`ncm_accuracy` takes (``"gram"`` or ``"gather"``) and the cost
    model's predicted seconds of the float32 stage for each (``inf``: not allowed)."""

    path: str
    seconds: dict[str, float]


def plan_scoring(
    n: int,
    dim: int,
    ways: int,
    shots: int,
    queries: int,
    n_episodes: int,
    *,
    max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES,
) -> ScoringPlan:
    """Choose between the Gram path (build ``G = F·Fᵀ`` once, ``N²·D`` multiply-adds, then
    read ``W·S·(W·Q + S)`` entries of it per episode) and the gather path (copy the
    episode's ``W·(S + Q)`` rows, ``W²·Q·D`` multiply-adds per episode) for ``n_episodes``
    episodes over ``n`` features of ``dim`` dimensions. The Gram path is refused when its
    float32 matrix would exceed ``max_gram_bytes``."""
    wq = ways * queries
    value = _GATHER_VALUE_CACHED if 4 * n * dim <= _CACHE_BYTES else _GATHER_VALUE
    gather = n_episodes * (
        _GATHER_EPISODE + value * ways * (shots + queries) * dim + _GATHER_MAC * ways * wq * dim
    )
    gram_bytes = 4 * n * n
    entry = _GRAM_ENTRY_CACHED if gram_bytes <= _CACHE_BYTES else _GRAM_ENTRY
    gram = n * n * (_GRAM_ENTRY_BUILT + _GRAM_BUILD_MAC * dim) + n_episodes * (
        _GRAM_EPISODE + entry * ways * shots * (wq + shots)
    )
    if gram_bytes > max_gram_bytes:
        gram = math.inf
    seconds = {"gram": gram, "gather": gather}
    return ScoringPlan(min(seconds, key=seconds.__getitem__), seconds)


def _gather_scores(
    f: np.ndarray, episodes: Episodes, chunk_bytes: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Scores ``σ`` (b, W, W·Q) of chunks of episodes, from each chunk's own support and
    query rows of ``f`` (any float dtype; arithmetic in it), with the chunk's first episode."""
    e, w, s, q = len(episodes), episodes.ways, episodes.shots, episodes.queries
    d = f.shape[1]
    step = max(1, min(e, chunk_bytes // (w * (s + q) * d * f.itemsize)))
    support = np.empty((step * w * s, d), dtype=f.dtype)  # reused: no page faults
    query = np.empty((step * w * q, d), dtype=f.dtype)
    for start in range(0, e, step):
        sup = episodes.support[start : start + step].reshape(-1)
        qry = episodes.query[start : start + step].reshape(-1)
        b = len(sup) // (w * s)
        # indices were range-checked: "clip" lets take write straight into the buffers
        xs = np.take(f, sup, axis=0, out=support[: len(sup)], mode="clip")
        xq = np.take(f, qry, axis=0, out=query[: len(qry)], mode="clip").reshape(b, w * q, d)
        sums = xs.reshape(b, w, s, d).sum(axis=2) if s > 1 else xs.reshape(b, w, d)
        half = np.einsum("bwd,bwd->bw", sums, sums) / f.dtype.type(2 * s)
        score = np.matmul(sums, xq.transpose(0, 2, 1))  # q·T_w
        score -= half[:, :, None]
        yield start, score


def _gram_scores(
    f: np.ndarray, episodes: Episodes, chunk_bytes: int
) -> Iterator[tuple[int, np.ndarray]]:
    """As :func:`_gather_scores`, from the Gram matrix ``G = F·Fᵀ`` built once:
    ``q·T_w = Σ_s G[q, s]`` and ``‖T_w‖² = Σ_{s,t} G[s, t]``."""
    e, w, s, q = len(episodes), episodes.ways, episodes.shots, episodes.queries
    n = f.shape[0]
    flat = np.matmul(f, f.T).reshape(-1)
    step = max(1, min(e, chunk_bytes // (w * s * (w * q + s) * (8 + f.itemsize))))
    for start in range(0, e, step):
        sup = episodes.support[start : start + step].astype(np.int64)  # (b, W, S)
        b = len(sup)
        rows = sup[..., None] * n  # (b, W, S, 1)
        qry = episodes.query[start : start + b].reshape(b, 1, 1, w * q)
        score = np.take(flat, rows + qry, mode="clip").sum(axis=2)  # (b, W, WQ)
        block = np.take(flat, rows + sup[:, :, None, :], mode="clip").sum(axis=(2, 3))
        score -= (block / f.dtype.type(2 * s))[:, :, None]
        yield start, score


def _decide(
    scores: Iterator[tuple[int, np.ndarray]], episodes: Episodes, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per episode, the queries proved right by their scores; and (E, W·Q) the queries too
    close to call: another way within ``tol`` of the best."""
    e, w, q = len(episodes), episodes.ways, episodes.queries
    own = np.repeat(np.arange(w), q) * (w * q) + np.arange(w * q)  # a query's own way's score
    right = np.empty(e, dtype=np.int64)
    near = np.empty((e, w * q), dtype=bool)
    for start, score in scores:
        b = len(score)
        best = score.max(axis=1)  # (b, WQ)
        within = score >= (best - score.dtype.type(tol))[:, None, :]
        close = np.add.reduce(within, axis=1, dtype=np.int8) > 1  # the best is one of them
        hit = score.reshape(b, -1)[:, own] == best
        hit &= ~close
        right[start : start + b] = np.count_nonzero(hit, axis=1)
        near[start : start + b] = close
    return right, near


def _reference_distances(
    f: torch.Tensor, support: np.ndarray, query_rows: np.ndarray
) -> torch.Tensor:
    """Squared distances (n, W) of queries to their ways' support means, computed as
    :func:`ncm_accuracy_loop` computes them: ``support`` (n, W, S) and ``query_rows`` (n,)
    index ``f``."""
    n, w, s = support.shape
    rows = torch.from_numpy(np.asarray(support, dtype=np.int64).reshape(-1))
    means = f.index_select(0, rows).view(n, w, s, -1).mean(2)  # (n, W, D)
    queries = torch.from_numpy(np.asarray(query_rows, dtype=np.int64))
    queries = f.index_select(0, queries)[:, None, :]  # (n, 1, D)
    return ((queries[:, :, None, :] - means[:, None, :, :]) ** 2).sum(-1)[:, 0]


def _ncm_correct(
    f: torch.Tensor,
    episodes: Episodes,
    path: str,
    chunk_bytes: int,
    tol: float | None = None,
) -> tuple[np.ndarray, int]:
    """Correct queries per episode over prepared float64 features ``f``, and how many
    queries the float64 stage rescored. ``tol`` overrides :func:`margin_tolerance`."""
    w, s, q = episodes.ways, episodes.shots, episodes.queries
    if tol is None:
        tol = margin_tolerance(f.shape[1], s)
    f32 = f.numpy().astype(np.float32)
    scores = _gram_scores if path == "gram" else _gather_scores
    correct, near = _decide(scores(f32, episodes, chunk_bytes), episodes, tol)
    near_e, near_r = np.nonzero(near)
    step = max(1, _RESCORE_BYTES // (w * (s + 1) * f.shape[1] * 8))
    query_rows = episodes.query.reshape(len(episodes), w * q)
    for start in range(0, len(near_e), step):
        e, r = near_e[start : start + step], near_r[start : start + step]
        distances = _reference_distances(f, episodes.support[e], query_rows[e, r])
        np.add.at(correct, e, distances.argmin(-1).numpy() == r // q)
    return correct, len(near_e)


@in_phase("evaluation")
def ncm_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    episodes: Episodes,
    *,
    center: ArrayLike | None = None,
    path: str = "auto",
    max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """Per-episode NCM accuracy (fraction of queries right, in [0, 1]) of ``episodes``
    drawn on ``labels``, over ``features`` (N x D, one row per label).

    Features are centred on ``center`` and L2-normalised (:func:`prepare_features`); a
    query goes to the way whose support mean is nearest in Euclidean distance (ties to the
    lower way). All episodes are scored in float32 as array operations in chunks of about
    ``chunk_bytes``, along ``path``: ``"gram"`` (from the float32 Gram matrix, at most
    ``max_gram_bytes``), ``"gather"`` (from each chunk's own rows) or ``"auto"`` (the
    cheaper by :func:`plan_scoring`). Queries whose two nearest ways are within float32
    rounding of each other (:func:`margin_tolerance`) are rescored in float64 the way
    :func:`ncm_accuracy_loop` scores them, so the result equals the loop's whatever the
    path.
    """
    labels = _as_labels(labels)
    f = prepare_features(features, center)
    _check_episodes(labels, f.shape[0], episodes)
    n, d = f.shape
    if path not in ("auto", *PATHS):
        raise ValueError(f"path must be 'auto', 'gram' or 'gather', got {path!r}")
    plan = plan_scoring(
        n,
        d,
        episodes.ways,
        episodes.shots,
        episodes.queries,
        len(episodes),
        max_gram_bytes=max_gram_bytes,
    )
    if path == "gram" and plan.seconds["gram"] == math.inf:
        raise ValueError(
            f"the Gram matrix of {n} features takes {4 * n * n} bytes, above max_gram_bytes "
            f"({max_gram_bytes}); use path='gather' or raise max_gram_bytes"
        )
    correct, _ = _ncm_correct(f, episodes, plan.path if path == "auto" else path, chunk_bytes)
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

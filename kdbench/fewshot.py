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

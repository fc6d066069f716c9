"""Metrics of a binary decision made by thresholding a score: AUROC, the false-positive rate
at a fixed true-positive rate, and the macro-F1 of a decision.

All are exact with tied scores. The one-vector functions (:func:`auroc`, :func:`fpr_at_tpr`,
:func:`binary_macro_f1`) are what users call; the ``*_rows`` versions score many tasks at
once, one task per row of a matrix, with label ``-1`` marking padding, so a protocol scores
thousands of tasks as array operations instead of a Python loop.

Conventions (positives are the class the score should rank high):

* AUROC is the Mann–Whitney U statistic divided by ``P * N``: the probability that a random
  positive scores above a random negative, ties counted half.
* FPR at ``tpr`` is measured at the operating point "positive iff score >= t" for the
  highest threshold ``t`` at which the true-positive rate reaches ``tpr``; tied scores are
  always on the same side of the threshold, so a tie is never split to hit the target
  exactly. It is the fewest false positives any threshold reaching ``tpr`` can have.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_array(values: Any, name: str, dtype: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == object:
        raise ValueError(f"{name} must be numbers, got objects")
    return array.astype(dtype, copy=False)


def _check_pair(scores: Any, labels: Any, allow_padding: bool) -> tuple[np.ndarray, np.ndarray]:
    s = _as_array(scores, "scores", np.float64)
    y = _as_array(labels, "labels", np.int64) if not _is_bool(labels) else None
    if y is None:
        y = _as_array(labels, "labels", bool).astype(np.int64)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must have the same shape")
    allowed = (-1, 0, 1) if allow_padding else (0, 1)
    if y.size and not np.isin(y, allowed).all():
        bad = sorted({int(v) for v in np.unique(y)} - set(allowed))
        raise ValueError(
            f"labels must be {' / '.join(map(str, allowed))} (1 = positive"
            f"{', -1 = padding' if allow_padding else ''}), got {bad}"
        )
    real = y >= 0
    if not np.isfinite(s[real]).all():
        raise ValueError("scores must be finite (got NaN or infinity)")
    return s, y


def _is_bool(values: Any) -> bool:
    dtype = getattr(values, "dtype", None)
    return dtype is not None and str(dtype) in ("bool", "torch.bool")


def _counts(y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    positives = (y == 1).sum(-1)
    negatives = (y == 0).sum(-1)
    bad = (positives == 0) | (negatives == 0)
    if bad.any():
        row = int(np.argmax(np.atleast_1d(bad)))
        where = f" (row {row})" if y.ndim > 1 else ""
        raise ValueError(
            f"{what} needs at least one positive and one negative{where}; got "
            f"{int(np.atleast_1d(positives)[row])} positive(s) and "
            f"{int(np.atleast_1d(negatives)[row])} negative(s)"
        )
    return positives, negatives


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, tied values sharing the mean of their ranks
    (``scipy.stats.rankdata(method='average')`` for every row at once)."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n = s.shape[-1]
    order = np.argsort(s, axis=-1, kind="stable")
    ordered = np.take_along_axis(s, order, -1)
    position = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=-1)[:, ::-1]
    ranks = np.empty_like(s)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, -1)
    return ranks.reshape(np.shape(scores))


def auroc_rows(scores: Any, labels: Any) -> np.ndarray:
    """AUROC of every row of ``scores`` (T, n) against ``labels`` (T, n) in {1, 0, -1}."""
    s, y = _check_pair(scores, labels, allow_padding=True)
    s, y = np.atleast_2d(s), np.atleast_2d(y)
    positives, negatives = _counts(y, "AUROC")
    # padding ranks above every real score, so the real scores' ranks are unchanged
    ranks = average_ranks(np.where(y >= 0, s, np.inf))
    rank_sum = np.where(y == 1, ranks, 0.0).sum(-1)
    u = rank_sum - positives * (positives + 1) / 2
    return u / (positives * negatives)


def fpr_at_tpr_rows(scores: Any, labels: Any, tpr: float = 0.95) -> np.ndarray:
    """False-positive rate at true-positive rate ``tpr`` of every row (see the module doc)."""
    if not 0.0 <= tpr <= 1.0:
        raise ValueError(f"tpr must be in [0, 1], got {tpr}")
    s, y = _check_pair(scores, labels, allow_padding=True)
    s, y = np.atleast_2d(s), np.atleast_2d(y)
    positives, negatives = _counts(y, "FPR at TPR")
    # descending by score; padding last
    keyed = np.where(y >= 0, s, -np.inf)
    order = np.argsort(-keyed, axis=-1, kind="stable")
    ordered = np.take_along_axis(keyed, order, -1)
    label = np.take_along_axis(y, order, -1)
    tp = np.cumsum(label == 1, axis=-1)
    fp = np.cumsum(label == 0, axis=-1)
    # a threshold can only sit between different scores: evaluate at the end of each tie group
    group_end = np.ones(s.shape, dtype=bool)
    group_end[:, :-1] = ordered[:, 1:] != ordered[:, :-1]
    needed = np.ceil(tpr * positives - 1e-9).astype(np.int64)
    reached = group_end & (tp >= needed[:, None])
    at = np.argmax(reached, axis=-1)
    false_pos = np.take_along_axis(fp, at[:, None], -1)[:, 0]
    return np.where(needed > 0, false_pos / negatives, 0.0)


def binary_macro_f1_rows(predicted: Any, labels: Any) -> np.ndarray:
    """Macro-F1 (mean of the positive and the negative class's F1) of boolean decisions
    ``predicted`` (T, n) against ``labels`` (T, n) in {1, 0, -1}, per row."""
    p = _as_array(predicted, "predicted", bool)
    _, y = _check_pair(np.zeros(p.shape), labels, allow_padding=True)
    p, y = np.atleast_2d(p), np.atleast_2d(y)
    _counts(y, "macro-F1")
    pos, neg = y == 1, y == 0
    tp = (p & pos).sum(-1)
    fp = (p & neg).sum(-1)
    fn = (~p & pos).sum(-1)
    tn = (~p & neg).sum(-1)
    # each row has both classes, so neither denominator can be zero
    f1_pos = 2 * tp / (2 * tp + fp + fn)
    f1_neg = 2 * tn / (2 * tn + fn + fp)
    return (f1_pos + f1_neg) / 2


def _single(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """One task's scores and labels, checked: one-dimensional, labels 0/1 only."""
    s, y = _check_pair(scores, labels, allow_padding=False)
    if s.ndim != 1:
        raise ValueError(
            f"scores and labels must be one-dimensional, got shape {s.shape}; "
            "the *_rows functions score many tasks at once"
        )
    return s, y


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1/True = positive).

    Equals the Mann–Whitney U statistic over ``P * N``: the fraction of (positive, negative)
    pairs where the positive scores higher, ties counting one half. Needs at least one
    positive and one negative; scores must be finite.

    >>> auroc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0])
    0.875
    """
    return float(auroc_rows(*_single(scores, labels))[0])


def fpr_at_tpr(scores: Any, labels: Any, tpr: float = 0.95) -> float:
    """False-positive rate when the decision "positive iff score >= t" uses the highest
    threshold ``t`` whose true-positive rate is at least ``tpr`` (default 95%).

    Tied scores move together (a threshold never splits a tie), so the result is the smallest
    FPR among all thresholds that reach ``tpr``. Needs at least one positive and one negative.

    >>> fpr_at_tpr([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], tpr=0.95)
    0.5
    """
    return float(fpr_at_tpr_rows(*_single(scores, labels), tpr)[0])


def binary_macro_f1(predicted: Any, labels: Any) -> float:
    """Macro-F1 of boolean decisions against binary labels (mean of both classes' F1)."""
    p = _as_array(predicted, "predicted", bool)
    _, y = _single(p.astype(np.float64), labels)
    return float(binary_macro_f1_rows(p, y)[0])

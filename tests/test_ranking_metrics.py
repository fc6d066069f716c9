"""AUROC, FPR at a fixed TPR and macro-F1 against direct computations, ties included."""

import numpy as np
import pytest
import torch

from kdbench.metrics import auroc, binary_macro_f1, fpr_at_tpr
from kdbench.metrics.ranking import (
    auroc_rows,
    average_ranks,
    binary_macro_f1_rows,
    fpr_at_tpr_rows,
)


def direct_auroc(scores, labels):
    """Every (positive, negative) pair: 1 if the positive is higher, 1/2 if tied."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def direct_fpr_at_tpr(scores, labels, tpr):
    """Try every threshold (each score, and one above all): keep the smallest FPR among
    those whose TPR reaches the target."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    best = None
    for t in [*scores.tolist(), np.inf]:
        predicted = scores >= t
        if predicted[labels].mean() >= tpr - 1e-12:
            fpr = predicted[~labels].mean()
            best = fpr if best is None else min(best, fpr)
    return best


def direct_macro_f1(predicted, labels):
    f1s = []
    for cls in (True, False):
        tp = sum(p == cls and y == cls for p, y in zip(predicted, labels))
        fp = sum(p == cls and y != cls for p, y in zip(predicted, labels))
        fn = sum(p != cls and y == cls for p, y in zip(predicted, labels))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / 2


def random_case(rng, n, levels):
    """Scores from few distinct values (many ties), with both classes present."""
    labels = rng.random(n) < rng.uniform(0.2, 0.8)
    labels[0], labels[1] = True, False
    scores = rng.integers(0, levels, n) / levels
    return scores, labels


@pytest.mark.parametrize("levels", [2, 3, 5, 1000])
def test_auroc_matches_pairwise_counting_with_ties(levels):
    rng = np.random.default_rng(levels)
    for _ in range(60):
        scores, labels = random_case(rng, int(rng.integers(2, 40)), levels)
        assert auroc(scores, labels) == pytest.approx(direct_auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("tpr", [0.95, 0.5, 1.0, 0.8, 0.0])
@pytest.mark.parametrize("levels", [2, 4, 1000])
def test_fpr_at_tpr_matches_trying_every_threshold(tpr, levels):
    rng = np.random.default_rng(int(tpr * 100) + levels)
    for _ in range(60):
        scores, labels = random_case(rng, int(rng.integers(2, 40)), levels)
        expected = direct_fpr_at_tpr(scores, labels, tpr)
        assert fpr_at_tpr(scores, labels, tpr) == pytest.approx(expected, abs=1e-12)


def test_ties_count_half_and_move_together():
    assert auroc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    # one positive tied with one of two negatives
    assert auroc([0.7, 0.7, 0.2], [1, 0, 0]) == 0.75
    # to catch the positive at 0.3 the threshold must also take the negative tied with it
    scores = [0.9, 0.3, 0.3, 0.1]
    assert fpr_at_tpr(scores, [1, 1, 0, 0]) == 0.5
    # a tie is never split: TPR 1 forces every tied negative in
    assert fpr_at_tpr([0.5] * 4, [1, 0, 1, 0], tpr=1.0) == 1.0
    assert fpr_at_tpr([0.5] * 4, [1, 0, 1, 0], tpr=0.0) == 0.0


def test_extremes_and_the_95_percent_boundary():
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    # 20 positives: 19 caught is exactly 95%, so the 20th (below every negative) is not needed
    scores = np.r_[np.linspace(1, 0.5, 19), -1.0, np.linspace(0.4, 0, 20)]
    labels = np.r_[np.ones(20), np.zeros(20)]
    assert fpr_at_tpr(scores, labels) == 0.0
    assert fpr_at_tpr(scores, labels, tpr=1.0) == 1.0
    assert auroc(scores, labels) == pytest.approx(19 / 20)


def test_degenerate_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match=r"at least one positive and one negative.*3 positive"):
        auroc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="0 positive"):
        fpr_at_tpr([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="at least one positive"):
        auroc([], [])
    with pytest.raises(ValueError, match="finite"):
        auroc([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="same shape"):
        auroc([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="labels must be 0 / 1"):
        auroc([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="tpr must be in"):
        fpr_at_tpr([0.1, 0.2], [1, 0], tpr=1.5)
    with pytest.raises(ValueError, match="one-dimensional"):
        auroc([[0.1, 0.2]], [[1, 0]])


def test_torch_inputs_and_boolean_labels():
    scores = torch.tensor([0.9, 0.4, 0.4, 0.1])
    labels = torch.tensor([True, True, False, False])
    assert auroc(scores, labels) == 0.875
    assert fpr_at_tpr(scores, labels) == 0.5


def test_rows_with_padding_equal_each_row_alone():
    rng = np.random.default_rng(7)
    width = 30
    scores = np.zeros((25, width))
    labels = np.full((25, width), -1)
    singles = []
    for row in range(25):
        n = int(rng.integers(2, width + 1))
        s, y = random_case(rng, n, 4)
        # padding in random places, with scores that would change the answer if counted
        slots = np.sort(rng.choice(width, n, replace=False))
        scores[row] = rng.normal(size=width) * 10
        scores[row, slots], labels[row, slots] = s, y
        singles.append((s, y))
    ar = auroc_rows(scores, labels)
    fr = fpr_at_tpr_rows(scores, labels, 0.9)
    decisions = scores > 0.4
    mf = binary_macro_f1_rows(decisions, labels)
    for row, (s, y) in enumerate(singles):
        assert ar[row] == pytest.approx(direct_auroc(s, y))
        assert fr[row] == pytest.approx(direct_fpr_at_tpr(s, y, 0.9))
        assert mf[row] == pytest.approx(direct_macro_f1(s > 0.4, y))


def test_rows_refuse_a_row_without_negatives_and_name_it():
    scores = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    labels = np.array([[1, 0, -1], [1, 1, -1]])
    with pytest.raises(ValueError, match=r"row 1.*2 positive\(s\) and 0 negative"):
        auroc_rows(scores, labels)


def test_macro_f1_matches_the_definition():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(2, 30))
        labels = rng.random(n) < 0.5
        labels[0], labels[1] = True, False
        predicted = rng.random(n) < 0.5
        assert binary_macro_f1(predicted, labels) == pytest.approx(
            direct_macro_f1(predicted, labels)
        )
    assert binary_macro_f1([True, False], [True, False]) == 1.0
    # everything called positive: F1 of the negatives is 0
    assert binary_macro_f1([True] * 4, [1, 1, 0, 0]) == pytest.approx((2 / 3 + 0) / 2)


def test_average_ranks_share_ties():
    ranks = average_ranks(np.array([[3.0, 1.0, 3.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0, 0.0]]))
    assert ranks.tolist() == [[4, 1, 4, 2, 4], [3.5, 3.5, 3.5, 3.5, 1]]

import math

import pytest
import torch
from kdbench_losses.dkd import DKDLoss, dkd_parts

from kdbench.losses import LossShapes
from kdbench.models.backbone import Features

SHAPES = LossShapes(student_dim=4, teacher_dim=6, num_classes=5)


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def direct_dkd(s_row, t_row, target, alpha, beta, temp):
    """DKD written out with plain Python numbers, as the paper states it."""

    def softmax(z):
        e = [math.exp(v / temp) for v in z]
        return [v / sum(e) for v in e]

    p_s, p_t = softmax(s_row), softmax(t_row)
    b_s, b_t = [p_s[target], 1 - p_s[target]], [p_t[target], 1 - p_t[target]]
    others = [i for i in range(len(s_row)) if i != target]
    hat_s = [p_s[i] / (1 - p_s[target]) for i in others]
    hat_t = [p_t[i] / (1 - p_t[target]) for i in others]
    return kl(b_t, b_s), kl(hat_t, hat_s), kl(p_t, p_s), p_t[target]


def test_dkd_matches_the_paper_formula():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5, dtype=torch.float64) * 3, torch.randn(6, 5, dtype=torch.float64) * 3
    labels = torch.tensor([0, 1, 2, 3, 4, 2])
    loss = DKDLoss(SHAPES, alpha=0.7, beta=8.0, temperature=2.0)
    got = loss(Features(pooled=s, logits=s), Features(pooled=t, logits=t), labels)
    rows = [
        direct_dkd(s[i].tolist(), t[i].tolist(), int(labels[i]), 0.7, 8.0, 2.0) for i in range(6)
    ]
    tckd = sum(r[0] for r in rows) / 6
    nckd = sum(r[1] for r in rows) / 6
    assert math.isclose(float(got), 4.0 * (0.7 * tckd + 8.0 * nckd), rel_tol=1e-5)


def test_the_parts_decompose_hinton_kd():
    """KL(p_T ‖ p_S) = TCKD + (1 - p_T,target) · NCKD for every example (the paper's Eq. 5)."""
    torch.manual_seed(1)
    s, t = torch.randn(8, 7, dtype=torch.float64), torch.randn(8, 7, dtype=torch.float64)
    target = torch.randint(0, 7, (8,))
    tckd, nckd = dkd_parts(s, t, target, 1.5)
    for i in range(8):
        _, _, full, p_target = direct_dkd(s[i].tolist(), t[i].tolist(), int(target[i]), 1, 1, 1.5)
        assert math.isclose(float(tckd[i] + (1 - p_target) * nckd[i]), full, rel_tol=1e-5)


def test_unlabelled_images_use_the_teachers_top_class_or_are_left_out():
    torch.manual_seed(2)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([1, -1, 3, -1])
    filled = torch.where(labels >= 0, labels, t.argmax(-1))
    student, teacher = Features(pooled=s, logits=s), Features(pooled=t, logits=t)
    as_teacher = DKDLoss(SHAPES)(student, teacher, labels)
    assert torch.isclose(as_teacher, DKDLoss(SHAPES)(student, teacher, filled))
    ignored = DKDLoss(SHAPES, unlabelled="ignore")(student, teacher, labels)
    keep = labels >= 0
    expected = DKDLoss(SHAPES)(
        Features(pooled=s[keep], logits=s[keep]),
        Features(pooled=t[keep], logits=t[keep]),
        labels[keep],
    )
    assert torch.isclose(ignored, expected)
    none = DKDLoss(SHAPES, unlabelled="ignore")(student, teacher, torch.full((4,), -1))
    assert float(none) == 0.0


def test_gradients_are_finite_with_confident_logits():
    s = (torch.randn(5, 5) * 50).requires_grad_()
    t = torch.randn(5, 5) * 50
    loss = DKDLoss(SHAPES)(
        Features(pooled=s, logits=s), Features(pooled=t, logits=t), torch.arange(5)
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_identical_logits_give_zero_and_bad_options_are_refused():
    z = torch.randn(3, 5)
    f = Features(pooled=z, logits=z)
    assert abs(float(DKDLoss(SHAPES)(f, f, torch.tensor([0, 1, 2])))) < 1e-6
    with pytest.raises(ValueError, match="temperature"):
        DKDLoss(SHAPES, temperature=0)
    with pytest.raises(ValueError, match="unlabelled"):
        DKDLoss(SHAPES, unlabelled="drop")

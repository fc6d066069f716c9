import math

import torch
from kdbench_losses.affinity import AffinityLoss

from kdbench.losses import LossShapes
from kdbench.models.backbone import Features

SHAPES = LossShapes(student_dim=3, teacher_dim=5, num_classes=2)


def direct_affinity(s, t, temp):
    """mean_i KL(softmax_j≠i(cos(t_i,t_j)/τ) ‖ softmax_j≠i(cos(s_i,s_j)/τ)), written out."""

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))

    def row(x, i):
        logits = [cos(x[i], x[j]) / temp for j in range(len(x)) if j != i]
        z = sum(math.exp(v) for v in logits)
        return [math.exp(v) / z for v in logits]

    total = 0.0
    for i in range(len(s)):
        p, q = row(t, i), row(s, i)
        total += sum(a * math.log(a / b) for a, b in zip(p, q))
    return total / len(s)


def test_affinity_matches_the_direct_formula():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64)
    got = AffinityLoss(SHAPES, temperature=0.5)(Features(pooled=s), Features(pooled=t), None)
    assert math.isclose(float(got), direct_affinity(s.tolist(), t.tolist(), 0.5), rel_tol=1e-5)


def test_same_similarity_structure_costs_nothing_whatever_the_width():
    torch.manual_seed(1)
    t = torch.randn(6, 5)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    loss = AffinityLoss(SHAPES)
    same = loss(Features(pooled=3 * t @ q), Features(pooled=t), None)
    other = loss(Features(pooled=torch.randn(6, 3)), Features(pooled=t), None)
    assert abs(float(same)) < 1e-5 < float(other)


def test_gradients_flow_and_tiny_batches_add_nothing():
    s = torch.randn(4, 3, requires_grad=True)
    AffinityLoss(SHAPES)(Features(pooled=s), Features(pooled=torch.randn(4, 5)), None).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    tiny = AffinityLoss(SHAPES)(Features(pooled=s[:2]), Features(pooled=torch.randn(2, 5)), None)
    assert float(tiny.detach()) == 0

import itertools
import math

import torch
import torch.nn.functional as F
from kdbench_rkd.loss import RKDLoss, pairwise_distances, triplet_angles

from kdbench.losses import LossShapes
from kdbench.models.backbone import Features


def test_distances_match_a_direct_computation():
    x = torch.randn(5, 3, dtype=torch.float64)
    direct = torch.tensor(
        [[math.dist(a, b) for b in x.tolist()] for a in x.tolist()], dtype=x.dtype
    )
    mean = direct[~torch.eye(5, dtype=torch.bool)].mean()
    assert torch.allclose(pairwise_distances(x), direct / mean)


def test_angles_match_a_direct_computation():
    x = torch.randn(4, 3, dtype=torch.float64)
    got = triplet_angles(x)
    for i, j, k in itertools.product(range(4), repeat=3):
        if len({i, j, k}) < 3:
            continue
        u, v = x[i] - x[j], x[k] - x[j]
        assert torch.isclose(got[j, i, k], torch.dot(u, v) / (u.norm() * v.norm()))


def test_loss_is_zero_for_a_scaled_rotated_copy_and_positive_otherwise():
    loss = RKDLoss(LossShapes(student_dim=3, teacher_dim=3, num_classes=2))
    t = torch.randn(8, 3)
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    same = loss(Features(pooled=3.0 * t @ q), Features(pooled=t), None)
    other = loss(Features(pooled=torch.randn(8, 3)), Features(pooled=t), None)
    assert float(same) < 1e-6 < float(other)
    direct = 25 * F.smooth_l1_loss(
        pairwise_distances(other_s := torch.randn(8, 3)), pairwise_distances(t)
    )
    direct = direct + 50 * F.smooth_l1_loss(triplet_angles(other_s), triplet_angles(t))
    assert torch.isclose(loss(Features(pooled=other_s), Features(pooled=t), None), direct)


def test_the_plugin_registers_through_its_entry_point():
    from kdbench import plugins

    plugins.reset()
    registry = plugins.get_registry()
    loss = registry.get("losses", "rkd")
    method = registry.get("methods", "rkd")
    assert loss.distribution == "kdbench-rkd" and method.distribution == "kdbench-rkd"
    assert method.version == "0.1.0"

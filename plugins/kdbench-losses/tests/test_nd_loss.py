import math

import torch
from kdbench_losses.nd import NDLoss, nd_loss

from kdbench.losses import LossShapes
from kdbench.models.backbone import Features


def test_nd_matches_the_kdpp_formula():
    """1 - <s, c_y/||c_y||> / max(||s||, ||t||), averaged: the reference DirectNormLoss."""
    torch.manual_seed(0)
    s, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    centers = torch.randn(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 3, 3, 1, 2])
    direct = 0.0
    for i in range(5):
        c = centers[labels[i]].tolist()
        unit = [v / math.sqrt(sum(w * w for w in c)) for v in c]
        dot = sum(a * b for a, b in zip(s[i].tolist(), unit))
        largest = max(math.dist(s[i].tolist(), [0] * 3), math.dist(t[i].tolist(), [0] * 3))
        direct += 1 - dot / largest
    assert math.isclose(float(nd_loss(s, t, centers, labels)), direct / 5, rel_tol=1e-9)


def test_class_centres_are_the_running_means_of_the_teachers_embeddings():
    loss = NDLoss(LossShapes(student_dim=3, teacher_dim=3, num_classes=3)).train()
    t1, t2 = torch.randn(4, 3), torch.randn(2, 3)
    y1, y2 = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 2])
    for t, y in ((t1, y1), (t2, y2)):
        loss(Features(pooled=torch.randn(len(y), 3)), Features(pooled=t), y)
    means = torch.stack([torch.cat([t1[y1 == c], t2[y2 == c]]).mean(0) for c in range(3)])
    assert torch.allclose(loss.centers(), means, atol=1e-6)
    before = loss.centers().clone()
    loss.eval()(Features(pooled=torch.randn(1, 3)), Features(pooled=torch.randn(1, 3)), y1[:1])
    assert torch.equal(loss.centers(), before)  # evaluation does not move the centres


def test_the_loss_is_minimal_along_the_centre_at_the_teachers_norm_and_projects_widths():
    loss = NDLoss(LossShapes(student_dim=3, teacher_dim=3, num_classes=1)).eval()
    loss.center_sum[0] = torch.tensor([2.0, 0.0, 0.0])
    loss.center_count[0] = 1
    y = torch.zeros(1, dtype=torch.long)
    t = Features(pooled=torch.tensor([[0.0, 3.0, 0.0]]))
    aligned = loss(Features(pooled=torch.tensor([[3.0, 0.0, 0.0]])), t, y)
    shorter = loss(Features(pooled=torch.tensor([[1.0, 0.0, 0.0]])), t, y)
    turned = loss(Features(pooled=torch.tensor([[0.0, 3.0, 0.0]])), t, y)
    assert float(aligned) < 1e-7 < float(shorter) < float(turned)
    wide = NDLoss(LossShapes(student_dim=2, teacher_dim=5, num_classes=2))
    assert isinstance(wide.projector, torch.nn.Linear) and wide.projector.out_features == 5
    value = wide(
        Features(pooled=torch.randn(3, 2)),
        Features(pooled=torch.randn(3, 5)),
        torch.tensor([0, 1, 1]),
    )
    value.backward()
    assert wide.projector.weight.grad is not None

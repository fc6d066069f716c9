import torch
from kdbench_losses.cka import CKALoss, linear_cka

from kdbench.losses import LossShapes
from kdbench.metrics import linear_cka as reference_cka
from kdbench.models.backbone import Features

SHAPES = LossShapes(student_dim=6, teacher_dim=9, num_classes=3)


def direct_cka(x, y):
    """Kornblith et al.'s formula with an explicit centring matrix H = I - 11^T/n."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    kx, ky = x @ x.T, y @ y.T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(kx, ky) / torch.sqrt(hsic(kx, kx) * hsic(ky, ky))


def test_both_computations_match_the_direct_formula():
    torch.manual_seed(0)
    for n in (4, 20):  # fewer examples than features (Gram path) and more (covariance path)
        x, y = torch.randn(n, 6, dtype=torch.float64), torch.randn(n, 9, dtype=torch.float64)
        expected = float(direct_cka(x, y))
        assert abs(float(linear_cka(x, y)) - expected) < 1e-5
        assert abs(reference_cka(x, y) - expected) < 1e-9


def test_the_loss_is_one_minus_cka_and_zero_for_a_rotated_scaled_copy():
    torch.manual_seed(1)
    s, t = torch.randn(10, 6), torch.randn(10, 9)
    loss = CKALoss(SHAPES)
    value = loss(Features(pooled=s), Features(pooled=t), None)
    assert abs(float(value) - (1 - reference_cka(s, t))) < 1e-5
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert float(loss(Features(pooled=2.5 * s @ q + 1.0), Features(pooled=s), None)) < 1e-5


def test_token_mode_uses_every_token_and_resizes_the_students_grid():
    torch.manual_seed(2)
    s, t = torch.randn(2, 6, 4, 4), torch.randn(2, 9, 4, 4)
    loss = CKALoss(SHAPES, on="tokens")
    assert loss.requires == {"student.tokens", "teacher.tokens"}
    value = loss(
        Features(pooled=s[:, :, 0, 0], tokens=s), Features(pooled=t[:, :, 0, 0], tokens=t), None
    )
    rows = lambda m: m.permute(0, 2, 3, 1).reshape(-1, m.shape[1])  # noqa: E731
    assert abs(float(value) - (1 - reference_cka(rows(s), rows(t)))) < 1e-5
    small = torch.randn(2, 6, 2, 2)
    assert torch.isfinite(
        loss(
            Features(pooled=s[:, :, 0, 0], tokens=small),
            Features(pooled=t[:, :, 0, 0], tokens=t),
            None,
        )
    )


def test_gradients_flow_and_a_single_image_adds_nothing():
    s = torch.randn(8, 6, requires_grad=True)
    CKALoss(SHAPES)(Features(pooled=s), Features(pooled=torch.randn(8, 9)), None).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    one = CKALoss(SHAPES)(Features(pooled=s[:1]), Features(pooled=torch.randn(1, 9)), None)
    assert float(one.detach()) == 0

import math

import pytest
import torch
from kdbench_losses.skill import SKILLLoss, agglomerate, evenly, medoid, similarity_matrix

from kdbench.losses import LossShapes
from kdbench.metrics import linear_cka as reference_cka
from kdbench.models.backbone import Features

SHAPES = LossShapes(student_dim=4, teacher_dim=6, num_classes=3, student_layers=4, teacher_layers=6)


def rows(m):
    return m.permute(0, 2, 3, 1).reshape(-1, m.shape[1])


def grouped_layers(seed=0):
    """Six teacher layer outputs in the groups {0,1} {2,3} {4} {5}: members of a group
    are small perturbations of one random map."""
    g = torch.Generator().manual_seed(seed)
    bases = [torch.randn(3, 6, 2, 2, generator=g) for _ in range(4)]
    group_of = [0, 0, 1, 1, 2, 3]
    return [bases[k] + 0.05 * torch.randn(3, 6, 2, 2, generator=g) for k in group_of]


def test_similarity_is_pairwise_linear_cka_of_the_token_rows():
    layers = grouped_layers()
    sim = similarity_matrix(layers)
    for i in range(6):
        for j in range(6):
            expected = 1.0 if i == j else reference_cka(rows(layers[i]), rows(layers[j]))
            assert math.isclose(float(sim[i, j]), expected, abs_tol=1e-5)


def test_agglomerative_clustering_on_a_hand_made_matrix():
    sim = torch.tensor(
        [
            [1.0, 0.9, 0.2, 0.1, 0.1, 0.0],
            [0.9, 1.0, 0.3, 0.2, 0.1, 0.0],
            [0.2, 0.3, 1.0, 0.8, 0.7, 0.1],
            [0.1, 0.2, 0.8, 1.0, 0.6, 0.2],
            [0.1, 0.1, 0.7, 0.6, 1.0, 0.3],
            [0.0, 0.0, 0.1, 0.2, 0.3, 1.0],
        ]
    )
    assert agglomerate(sim, 3) == [[0, 1], [2, 3, 4], [5]]
    assert agglomerate(sim, 6) == [[i] for i in range(6)]
    assert agglomerate(sim, 1) == [list(range(6))]
    # average linkage: {2,3,4} vs {5} is (0.1+0.2+0.3)/3 = 0.2, vs {0,1} it is 1.0/6
    assert agglomerate(sim, 2, "average") == [[0, 1], [2, 3, 4, 5]]
    # single linkage (closest pair): both are 0.3; the tie merges the lower clusters
    assert agglomerate(sim, 2, "single") == [[0, 1, 2, 3, 4], [5]]
    # complete linkage (farthest pair): both are 0.1, {0,1}-{5} is 0.0; the tie again
    assert agglomerate(sim, 2, "complete") == [[0, 1, 2, 3, 4], [5]]
    assert medoid(sim, [2, 3, 4]) == 2
    assert evenly(4, 4) == [0, 1, 2, 3] and evenly(2, 4) == [0, 3] and evenly(3, 6) == [0, 2, 5]


def test_the_first_batch_clusters_the_teacher_and_the_state_keeps_it():
    loss = SKILLLoss(SHAPES)
    assert loss.teacher_layer_indices() == list(range(6))
    assert loss.student_layer_indices() == [0, 1, 2, 3]
    student = [torch.randn(3, 4, 2, 2) for _ in range(4)]
    loss(
        Features(pooled=None, layers=student), Features(pooled=None, layers=grouped_layers()), None
    )
    assert loss.partition() == [[0, 1], [2, 3], [4], [5]]
    fresh = SKILLLoss(SHAPES)
    fresh.load_state_dict(loss.state_dict())
    assert fresh.clustered and fresh.partition() == loss.partition()
    # a later batch with other structure does not regroup
    loss(
        Features(pooled=None, layers=student),
        Features(pooled=None, layers=grouped_layers(5)[::-1]),
        None,
    )
    assert loss.partition() == [[0, 1], [2, 3], [4], [5]]


def direct_group_loss(projector, s_map, target):
    """DistilHuBERT's objective token by token: |P s - t|_1 / D - log sigmoid(cos)."""
    p = projector(s_map).detach()
    total, count = 0.0, 0
    for b in range(p.shape[0]):
        for y in range(p.shape[2]):
            for x in range(p.shape[3]):
                u, v = p[b, :, y, x], target[b, :, y, x]
                cos = float(torch.dot(u, v) / (u.norm() * v.norm()))
                total += float((u - v).abs().sum()) / u.numel() - math.log(1 / (1 + math.exp(-cos)))
                count += 1
    return total / count


@pytest.mark.parametrize("target", ["mean", "medoid"])
def test_the_loss_matches_a_direct_computation(target):
    torch.manual_seed(0)
    partition = [[0, 1, 2], [3, 4], [5]]
    loss = SKILLLoss(
        LossShapes(4, 6, 3, student_layers=4, teacher_layers=6), partition=partition, target=target
    )
    assert loss.student_layer_indices() == [0, 2, 3]
    teacher = grouped_layers()
    student = [torch.randn(3, 4, 2, 2) for _ in range(3)]
    value = loss(Features(pooled=None, layers=student), Features(pooled=None, layers=teacher), None)
    assert loss.partition() == partition  # a fixed partition stays
    sim = similarity_matrix(teacher)
    expected = 0.0
    for g, members in enumerate(partition):
        goal = (
            torch.stack([teacher[i] for i in members]).mean(0)
            if target == "mean"
            else teacher[medoid(sim, members)]
        )
        expected += direct_group_loss(loss.projectors[g], student[g], goal)
    assert math.isclose(float(value.detach()), expected / 3, rel_tol=1e-5)
    value.backward()
    assert all(p.weight.grad is not None for p in loss.projectors)


def test_student_maps_on_another_grid_are_resized_and_bad_options_refused():
    loss = SKILLLoss(SHAPES)
    student = [torch.randn(3, 4, 1, 1) for _ in range(4)]
    value = loss(
        Features(pooled=None, layers=student), Features(pooled=None, layers=grouped_layers()), None
    )
    assert torch.isfinite(value)
    with pytest.raises(ValueError, match="each layer once"):
        SKILLLoss(SHAPES, partition=[[0, 1], [1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match="groups must be between"):
        SKILLLoss(SHAPES, groups=5)
    with pytest.raises(ValueError, match="linkage"):
        SKILLLoss(SHAPES, linkage="ward")
    wrong = [torch.randn(3, 5, 2, 2) for _ in range(4)]
    with pytest.raises(ValueError, match="projector was built for"):
        loss(
            Features(pooled=None, layers=wrong),
            Features(pooled=None, layers=grouped_layers()),
            None,
        )


def test_student_layers_of_growing_widths_get_one_projector_each():
    widths = (2, 3, 5, 7)  # a CNN's stages: each layer its own width and grid
    shapes = LossShapes(4, 6, 3, student_layers=4, teacher_layers=6, student_layer_dims=widths)
    loss = SKILLLoss(shapes, groups=3)
    assert loss.student_layer_indices() == [0, 2, 3]
    assert [p.in_channels for p in loss.projectors] == [2, 5, 7]
    student = [torch.randn(3, c, 8 >> i, 8 >> i, requires_grad=True) for i, c in enumerate(widths)]
    chosen = [student[i] for i in loss.student_layer_indices()]
    value = loss(
        Features(pooled=None, layers=chosen), Features(pooled=None, layers=grouped_layers()), None
    )
    value.backward()
    assert torch.isfinite(value) and all(student[i].grad is not None for i in (0, 2, 3))

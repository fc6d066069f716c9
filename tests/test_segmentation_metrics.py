"""confusion_matrix and miou against a direct per-class computation, and their edge cases."""

import math

import numpy as np
import pytest
import torch

from kdbench.metrics import confusion_matrix, miou
from kdbench.metrics.segmentation import IGNORE_INDEX, confusions, mean_per_class


def direct_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> list[float]:
    """IoU per class from boolean masks, the textbook way (NaN for zero union)."""
    valid = target != IGNORE_INDEX
    out = []
    for c in range(num_classes):
        p, t = (pred == c) & valid, (target == c) & valid
        union = (p | t).sum()
        out.append(float((p & t).sum() / union) if union else math.nan)
    return out


def random_maps(seed: int, shape=(3, 17, 23), num_classes=5, ignore_frac=0.2):
    g = np.random.default_rng(seed)
    target = g.integers(0, num_classes, shape)
    target[g.random(shape) < ignore_frac] = IGNORE_INDEX
    pred = np.where(g.random(shape) < 0.6, np.where(target == IGNORE_INDEX, 0, target), 0)
    pred = np.where(g.random(shape) < 0.3, g.integers(0, num_classes, shape), pred)
    return pred, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_direct_per_class_computation(seed):
    pred, target = random_maps(seed)
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 5)
    assert cm.dtype == torch.int64 and cm.shape == (5, 5)
    valid = target != IGNORE_INDEX
    assert int(cm.sum()) == int(valid.sum())
    for t in range(5):  # rows are the target, columns the prediction
        for p in range(5):
            assert int(cm[t, p]) == int(((target == t) & (pred == p) & valid).sum())
    result = miou(cm)
    np.testing.assert_allclose(result.per_class, direct_iou(pred, target, 5))
    assert result.mean == pytest.approx(np.nanmean(direct_iou(pred, target, 5)))
    assert result.absent == 0


def test_numpy_inputs_and_batches_add_up():
    pred, target = random_maps(3, shape=(4, 9, 9))
    whole = confusion_matrix(pred, target, 5)
    parts = sum(confusion_matrix(pred[i], target[i], 5) for i in range(4))
    assert torch.equal(whole, parts)


def test_an_absent_class_is_nan_and_left_out_of_the_mean():
    target = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 1, 0, 2]])  # class 2 only where ignored
    result = miou(confusion_matrix(pred, target, 3))
    assert math.isnan(result.per_class[2]) and result.absent == 1
    # class 0: tp 2, fp 1, fn 1 -> 0.5; class 1: tp 3, fp 1, fn 1 -> 0.6
    np.testing.assert_allclose(result.per_class[:2], [2 / 4, 3 / 5])
    assert result.mean == pytest.approx((0.5 + 0.6) / 2)


def test_a_class_predicted_but_absent_from_the_targets_scores_zero_not_nan():
    target = torch.zeros(2, 2, dtype=torch.long)
    pred = torch.tensor([[0, 0], [0, 1]])
    result = miou(confusion_matrix(pred, target, 2))
    assert result.per_class[1] == 0.0 and result.absent == 0
    assert result.mean == pytest.approx((3 / 4 + 0) / 2)


def test_all_ignore_images_count_nothing():
    target = torch.full((2, 5, 5), IGNORE_INDEX)
    pred = torch.randint(0, 4, (2, 5, 5))
    cm = confusion_matrix(pred, target, 4)
    assert int(cm.sum()) == 0
    result = miou(cm)
    assert math.isnan(result.mean) and result.absent == 4
    # an all-ignore image in a batch changes nothing
    pred2, target2 = random_maps(4, shape=(1, 5, 5), num_classes=4)
    batch = confusion_matrix(
        torch.cat([pred[:1], torch.from_numpy(pred2)]),
        torch.cat([target[:1], torch.from_numpy(target2)]),
        4,
    )
    assert torch.equal(batch, confusion_matrix(pred2, target2, 4))


def test_perfect_prediction_is_one():
    target = torch.tensor([0, 1, 2, 2, IGNORE_INDEX])
    pred = torch.tensor([0, 1, 2, 2, 1])
    assert miou(confusion_matrix(pred, target, 3)).mean == 1.0


def test_bad_values_are_named():
    with pytest.raises(ValueError, match=r"target values \[7\] are outside \[0, 3\)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([7, 1]), 3)
    with pytest.raises(ValueError, match=r"prediction values \[-1\]"):
        confusion_matrix(torch.tensor([-1, 1]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(
            torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 3
        )
    with pytest.raises(ValueError, match="argmax"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="square"):
        miou(np.zeros((2, 3)))


def test_ignore_index_can_be_switched_off():
    target = torch.tensor([0, 1, 1])
    cm = confusion_matrix(torch.tensor([0, 1, 0]), target, 2, ignore_index=None)
    assert cm.tolist() == [[1, 0], [1, 1]]


def test_inputs_are_left_untouched():
    pred, target = random_maps(5)
    pred_t, target_t = torch.from_numpy(pred.copy()), torch.from_numpy(target.copy())
    confusion_matrix(pred_t, target_t, 5)
    assert np.array_equal(pred_t.numpy(), pred) and np.array_equal(target_t.numpy(), target)


def test_confusions_accumulate_several_outputs_batch_by_batch():
    pred_a, target = random_maps(3, shape=(7, 9, 11))
    pred_b, _ = random_maps(4, shape=(7, 9, 11))
    masks = torch.from_numpy(target)
    seen = []

    def predict_batch(part):
        seen.append((part.start, part.stop))
        # one-hot "logits" whose argmax is the prediction
        return [
            torch.nn.functional.one_hot(torch.from_numpy(p[part]), 5).permute(0, 3, 1, 2).float()
            for p in (pred_a, pred_b)
        ]

    total = confusions(predict_batch, masks, 5, outputs=2, batch_size=3)
    assert seen == [(0, 3), (3, 6), (6, 9)]
    assert total.shape == (2, 5, 5) and total.dtype == torch.int64
    assert torch.equal(total[0], confusion_matrix(torch.from_numpy(pred_a), masks, 5))
    assert torch.equal(total[1], confusion_matrix(torch.from_numpy(pred_b), masks, 5))


def test_mean_per_class_averages_each_class_over_the_matrices_where_it_has_a_union():
    a = miou(np.array([[2, 0, 0], [0, 1, 0], [0, 0, 0]]))  # IoU 1, 1, NaN (zero union)
    b = miou(np.array([[1, 1, 0], [0, 0, 0], [0, 0, 3]]))  # IoU 0.5, 0, 1
    out = mean_per_class([a, b])
    np.testing.assert_allclose(out, [(1.0 + 0.5) / 2, (1.0 + 0.0) / 2, 1.0])
    assert np.isnan(mean_per_class([a])[2])

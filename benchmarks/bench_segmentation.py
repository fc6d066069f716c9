"""mIoU from one bincount confusion matrix vs. per-class boolean masks, on the same
predictions (a Cityscapes-sized batch: 19 classes, 4 images of 512 x 1024, 10% ignored).

Both give the same per-class IoU (asserted), so the timings compare the two ways of counting.

    python -m pytest benchmarks/bench_segmentation.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench.metrics import confusion_matrix, miou
from kdbench.metrics.segmentation import IGNORE_INDEX

NUM_CLASSES = 19
SHAPE = (4, 512, 1024)


@pytest.fixture(scope="module")
def maps() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, NUM_CLASSES, SHAPE, generator=g, dtype=torch.uint8)
    target[torch.rand(SHAPE, generator=g) < 0.1] = IGNORE_INDEX
    noise = torch.randint(0, NUM_CLASSES, SHAPE, generator=g)
    pred = torch.where(torch.rand(SHAPE, generator=g) < 0.7, target.long(), noise)
    pred = torch.where(target == IGNORE_INDEX, noise, pred)  # predictions exist everywhere
    return pred, target


def per_class_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """The straightforward way: boolean masks per class, intersection over union."""
    valid = target != IGNORE_INDEX
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        p, t = (pred == c) & valid, target == c
        union = int((p | t).sum())
        if union:
            out[c] = int((p & t).sum()) / union
    return out


@pytest.mark.benchmark(group="miou")
def test_bincount_confusion_matrix(benchmark, maps):
    pred, target = maps
    result = benchmark(lambda: miou(confusion_matrix(pred, target, NUM_CLASSES)))
    np.testing.assert_array_equal(result.per_class, per_class_iou(pred, target, NUM_CLASSES))


@pytest.mark.benchmark(group="miou")
def test_per_class_masks(benchmark, maps):
    pred, target = maps
    result = benchmark(per_class_iou, pred, target, NUM_CLASSES)
    expected = miou(confusion_matrix(pred, target, NUM_CLASSES))
    np.testing.assert_array_equal(result, expected.per_class)
    assert float(np.nanmean(result)) == expected.mean

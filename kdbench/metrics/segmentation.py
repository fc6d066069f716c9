"""Semantic segmentation scores from one dataset-level confusion matrix.

``confusion_matrix`` counts (target, prediction) pairs with one ``bincount`` (rows are the
target class, columns the predicted class, as in torchmetrics); pixels whose target is the
ignore index are left out. Confusion matrices of batches, images or whole evaluation sets
simply add up, so a dataset's matrix is accumulated batch by batch and stored to rescore.

``confusions`` accumulates the matrices of several models at once over an evaluation set,
batch by batch, from a function that gives each model's logits for a slice of it.

``miou`` follows mmsegmentation: per class IoU = TP / (TP + FP + FN); a class with zero
union (absent from the targets and never predicted) has IoU NaN and is left out of the mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

IGNORE_INDEX = 255


class IoU(NamedTuple):
    """Mean IoU over the classes with a non-zero union, and per-class IoU (NaN: zero union)."""

    mean: float
    per_class: np.ndarray

    @property
    def absent(self) -> int:
        """How many classes have zero union and are left out of the mean."""
        return int(np.isnan(self.per_class).sum())


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = IGNORE_INDEX,
) -> torch.Tensor:
    """The ``num_classes x num_classes`` int64 matrix whose entry ``[t, p]`` counts pixels of
    target class ``t`` predicted as ``p``, over pixels whose target is not ``ignore_index``.

    ``pred`` and ``target`` are integer class maps of the same shape (any number of images).
    Target values outside ``[0, num_classes)`` other than ``ignore_index``, or predictions
    outside it, raise a ``ValueError`` listing them.
    """
    pred, target = _as_tensor(pred), _as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}"
        )
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pred and target must be integer class maps (take argmax of logits first)")
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    target, pred = target.reshape(-1), pred.reshape(-1).to(target.device)
    ignored = target == ignore_index if ignore_index is not None else None
    outside = (target < 0) | (target >= num_classes)
    if ignored is not None:
        outside &= ~ignored
    if bool(outside.any()):
        bad = torch.unique(target[outside]).tolist()[:10]
        hint = f" and not {ignore_index} (ignore)" if ignore_index is not None else ""
        raise ValueError(f"target values {bad} are outside [0, {num_classes}){hint}")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        bad = torch.unique(pred[(pred < 0) | (pred >= num_classes)]).tolist()[:10]
        raise ValueError(f"prediction values {bad} are outside [0, {num_classes})")
    # one flat index per pixel; ignored pixels go to an extra bin that is dropped
    index = target.long() * num_classes + pred.long()
    if ignored is not None:
        index.masked_fill_(ignored, num_classes * num_classes)
    bins = num_classes * num_classes
    counts = torch.bincount(index, minlength=bins + 1)[:bins]
    return counts.reshape(num_classes, num_classes)


@torch.no_grad()
def confusions(
    predict_batch: Callable[[slice], list[torch.Tensor]],
    masks: torch.Tensor,
    num_classes: int,
    outputs: int,
    batch_size: int,
) -> torch.Tensor:
    """(outputs, C, C) confusion matrices, accumulated batch by batch; ``predict_batch``
    gives each output's logits for a slice of the evaluation set."""
    total = torch.zeros((outputs, num_classes, num_classes), dtype=torch.int64)
    for start in range(0, masks.shape[0], batch_size):
        part = slice(start, start + batch_size)
        target = masks[part]
        for i, logits in enumerate(predict_batch(part)):
            pred = logits.argmax(1).cpu()
            total[i] += confusion_matrix(pred, target, num_classes, IGNORE_INDEX)
    return total


def miou(confusion: torch.Tensor | np.ndarray) -> IoU:
    """Mean IoU and per-class IoU of a confusion matrix (rows target, columns prediction).

    Per class, IoU = TP / (TP + FP + FN); classes whose union TP + FP + FN is zero get NaN
    and are left out of the mean (nan-mean). If every class has zero union (an empty or
    all-ignored evaluation set) the mean is NaN too.
    """
    cm = np.asarray(
        confusion.cpu().numpy() if isinstance(confusion, torch.Tensor) else confusion,
        dtype=np.float64,
    )
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {cm.shape}")
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    per_class = np.full(cm.shape[0], np.nan)
    np.divide(tp, union, out=per_class, where=union > 0)
    valid = union > 0
    mean = float(per_class[valid].mean()) if valid.any() else float("nan")
    return IoU(mean, per_class)


def mean_per_class(ious: Sequence[IoU]) -> np.ndarray:
    """Per-class IoU averaged over several matrices (e.g. support draws), each class over
    the matrices where it has a non-zero union; NaN for a class with none."""
    values = np.stack([r.per_class for r in ious])
    finite = np.isfinite(values)
    total = np.where(finite, values, 0).sum(0)
    count = finite.sum(0)
    out = np.full(values.shape[1], np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out

"""Scenes for few-shot segmentation: a support pool whose images are decoded on demand and a
fixed evaluation set, from the registered dataset the config names (the Shapes world's
scenes are in :mod:`kdbench.world.source`).

Images are uint8 tensors (N, 3, S, S), masks uint8 (N, H, W) with ``IGNORE_INDEX`` for
pixels that are not scored; ``presence[i, c]`` says whether pool image ``i`` shows class
``c``, which is all the support sampler (:func:`kdbench.segmentation.draw_support`) reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key, cached_tensors
from kdbench.data.base import IGNORE_INDEX, SegmentationSplit, check_mask
from kdbench.data.source import open_source
from kdbench.errors import ConfigError
from kdbench.phases import in_phase
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity


@dataclass
class SceneData:
    """A support pool (images drawn on demand) and a fixed evaluation set, both as uint8
    tensors: images (N, 3, S, S), masks (N, H, W) with ``IGNORE_INDEX`` for unscored pixels."""

    classes: list[str]
    presence: np.ndarray
    """(pool size, classes) bool: which classes each pool image contains."""
    load_pool: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]
    eval_images: torch.Tensor
    eval_masks: torch.Tensor
    identity: DatasetIdentity
    draws: dict[str, str]
    """What the pool and the evaluation set are, as digests (a record's ``draws``)."""
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def scene_presence(masks: torch.Tensor, num_classes: int) -> np.ndarray:
    """(N, classes) bool: which classes occur (unignored) in each mask."""
    flat = masks.reshape(masks.shape[0], -1).long()
    n = flat.shape[0]
    keep = flat != IGNORE_INDEX
    index = torch.arange(n).unsqueeze(1) * num_classes + flat.clamp(max=num_classes - 1)
    counts = torch.bincount(index[keep], minlength=n * num_classes).reshape(n, num_classes)
    return (counts > 0).numpy()


def _resized(split: SegmentationSplit, index: int, size: int, label_size: int):
    """One image and mask of ``split`` (mask values checked, naming the file) resized to
    squares: bilinear ``size`` for the image, nearest ``label_size`` for the mask."""
    from PIL import Image

    image, mask = split.load(index)
    im = Image.fromarray(image).resize((size, size), Image.BILINEAR)
    lab = Image.fromarray(mask.astype(np.uint8), "L").resize(
        (label_size, label_size), Image.NEAREST
    )
    return np.asarray(im).transpose(2, 0, 1), np.asarray(lab)


def decode(
    split: SegmentationSplit,
    indices: Sequence[int],
    size: int,
    label_size: int,
    progress: Callable[..., Any] | None = None,
    desc: str = "decode",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, size, size) and masks (N, label_size, label_size), uint8."""
    images = np.zeros((len(indices), 3, size, size), dtype=np.uint8)
    masks = np.zeros((len(indices), label_size, label_size), dtype=np.uint8)
    rows: Any = enumerate(indices)
    if progress is not None:
        rows = progress(rows, desc=desc, total=len(indices))
    for row, i in rows:
        images[row], masks[row] = _resized(split, int(i), size, label_size)
    return torch.from_numpy(images), torch.from_numpy(masks)


def split_presence(split: SegmentationSplit, progress: Callable[..., Any] | None = None):
    """(N, classes) bool presence table of a split. COCO lists each image's classes in
    ``meta['image_classes']`` (background counted present in every image); other datasets
    have their masks decoded once (values checked, naming the file)."""
    n, c = len(split), split.num_classes
    presence = np.zeros((n, c), dtype=bool)
    listed = split.meta.get("image_classes")
    if listed is not None:
        for row, labels in enumerate(listed):
            presence[row, list(labels)] = True
        if split.classes and split.classes[0] == "background":
            presence[:, 0] = True
        return presence
    rows: Any = range(n)
    if progress is not None:
        rows = progress(rows, desc=f"classes of {split.name}/{split.split}", total=n)
    for row in rows:
        mask = np.asarray(split.mask_loader(split.masks[row]), dtype=np.int64)
        check_mask(mask, c, where=str(split.masks[row]))
        values = np.unique(mask)
        presence[row, values[values != IGNORE_INDEX]] = True
    return presence


def dataset_scenes(
    dataset: str,
    support: Any,
    evaluation: Any,
    *,
    image_size: int,
    label_size: int,
    eval_limit: int | None = None,
    progress: Callable[..., Any] | None = None,
) -> SceneData:
    """Scenes of a segmentation dataset (registered as ``dataset``): the support pool is the
    ``support`` split, decoded on demand; the first ``eval_limit`` images (default all) of
    ``evaluation`` are decoded now. The pool's presence table is cached per split manifest."""
    if not isinstance(support, SegmentationSplit):
        raise ConfigError(f"dataset {dataset!r} is not a segmentation dataset")
    if support.classes != evaluation.classes:
        raise ConfigError(
            f"{dataset}: the {support.split} and {evaluation.split} splits list different classes"
        )
    if support.num_classes >= IGNORE_INDEX:
        raise ConfigError(f"{dataset} has {support.num_classes} classes; at most 254 fit")
    key = cache_key("segmentation-presence", support.name, support.manifest_sha256)
    table, _ = cached_tensors(
        "segmentation-presence",
        key,
        lambda: {"presence": torch.from_numpy(split_presence(support, progress).astype(np.uint8))},
    )
    eval_index = list(range(len(evaluation)))[: eval_limit if eval_limit else None]
    eval_images, eval_masks = decode(
        evaluation, eval_index, image_size, label_size, progress, f"decode {evaluation.name}"
    )
    notes = []
    if eval_limit and eval_limit < len(evaluation):
        notes.append(
            f"evaluated on the first {eval_limit} of {len(evaluation)} images (eval_limit)"
        )
    return SceneData(
        classes=list(support.classes),
        presence=table["presence"].numpy().astype(bool),
        load_pool=lambda index: decode(support, index, image_size, label_size),
        eval_images=eval_images,
        eval_masks=eval_masks,
        identity=DatasetIdentity(
            name=dataset,
            manifest_sha256=cache_key(support.manifest_sha256, evaluation.manifest_sha256),
            sizes={"support_pool": len(support), "eval": len(eval_index)},
        ),
        draws={"support_pool": support.manifest_sha256, "eval": evaluation.manifest_sha256},
        notes=notes,
    )


@in_phase("data")
def load_scenes(
    config: dict[str, Any],
    registry: Registry,
    progress: Callable[..., Any] | None,
    key: str = "segmentation.data",
) -> SceneData:
    """The support pool and evaluation set ``config['data']`` names."""
    return open_source(registry, config["data"], key).scenes(config, progress)

"""Labelled image pools for zero-shot one-class classification: images in memory (the
Shapes world's, see :mod:`kdbench.world.source`) or a classification split decoded on
demand, with each class's taxonomy as integer codes so that task sampling
(:mod:`kdbench.oneclass`) is index arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key
from kdbench.confusers import LabelSet
from kdbench.data.base import ClassificationSplit
from kdbench.data.source import open_source
from kdbench.phases import in_phase
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity


@dataclass
class Pool:
    """The evaluation images and classes of zero-shot one-class tasks: targets and negatives
    both come from here."""

    names: list[str]
    """Pool label -> class name."""
    image_labels: np.ndarray
    """Per image, its pool label."""
    levels: tuple[str, ...] | None
    codes: np.ndarray | None
    """(classes, levels) integer id of each class's ancestor at each rank, or None."""
    vocabulary: LabelSet
    """Every label name confusers may come from (all classes of the dataset)."""
    text_index: np.ndarray
    """Pool label -> row of ``vocabulary.names``."""
    identity: DatasetIdentity
    digest: str
    images: torch.Tensor | None = None
    """uint8 images in memory (a generated world), or None: decoded from ``split`` on demand."""
    split: Any = None
    image_size: int | None = None
    resize: int | None = None

    @property
    def num_images(self) -> int:
        return int(self.image_labels.shape[0])


def taxonomy_codes(lineages: Sequence[Sequence[str]]) -> np.ndarray:
    """Integer ids per (class, rank) of each class's ancestor (by lineage prefix)."""
    depth = len(lineages[0]) if lineages else 0
    codes = np.zeros((len(lineages), depth), dtype=np.int64)
    for level in range(depth):
        ids: dict[tuple[str, ...], int] = {}
        for c, lineage in enumerate(lineages):
            codes[c, level] = ids.setdefault(tuple(lineage[: level + 1]), len(ids))
    return codes


def dataset_pool(
    dataset: str, split: ClassificationSplit, *, image_size: int, resize: int | None
) -> Pool:
    """A classification split (registered as ``dataset``) as a pool; its images are decoded
    on demand at ``image_size`` (shorter side resized to ``resize``, centre crop)."""
    names = list(split.classes)
    unique = list(dict.fromkeys(names))
    position = {n: i for i, n in enumerate(unique)}
    lineages = split.taxonomy
    levels = tuple(split.taxonomy_levels) if split.taxonomy_levels else None
    vocabulary = LabelSet(
        dataset,
        tuple(unique),
        tuple(tuple(lineages[names.index(n)]) for n in unique) if lineages else None,
        levels,
        None,
    )
    return Pool(
        names=names,
        image_labels=np.asarray(split.labels, dtype=np.int64),
        levels=levels,
        codes=taxonomy_codes(lineages) if lineages else None,
        vocabulary=vocabulary,
        text_index=np.asarray([position[n] for n in names], dtype=np.int64),
        identity=DatasetIdentity(
            name=dataset,
            manifest_sha256=split.manifest_sha256,
            sizes={split.split: len(split)},
        ),
        digest=cache_key(split.manifest_sha256, image_size, resize),
        split=split,
        image_size=image_size,
        resize=resize,
    )


@in_phase("data")
def load_pool(
    section: dict[str, Any],
    registry: Registry,
    progress: Callable[..., Any] | None,
    cache_root: Path | None = None,
    key: str = "oneclass.data",
) -> Pool:
    """The evaluation pool the ``data`` section names."""
    return open_source(registry, section, key).pool(section, progress, cache_root)

"""The labelled base-class images that protocols' student stages train on, from the
registered dataset the stage's config section names (:mod:`kdbench.data.source`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.data.source import open_source
from kdbench.phases import in_phase
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity


class BaseData:
    """Labelled base-class images a student stage trains on; given as a function,
    ``images`` are decoded on first use only (a cached student or cached features never
    need them)."""

    def __init__(
        self,
        load_images: Callable[[], torch.Tensor] | torch.Tensor,
        labels: torch.Tensor,
        class_names: list[str],
        identity: DatasetIdentity,
        digest: str,
    ) -> None:
        self._load_images = load_images
        self._images = None if callable(load_images) else load_images
        self.labels = labels
        self.class_names = class_names
        self.identity = identity
        self.digest = digest
        """Identifies the images as decoded (files, labels, size): part of cache keys."""

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            self._images = self._load_images()
        return self._images


@in_phase("data")
def load_base_data(
    base: dict[str, Any], registry: Registry, progress: Callable[..., Any] | None, key: str
) -> BaseData:
    """The labelled base-class images the stage trains on (the same for every seed), from
    the dataset the ``base`` section (dotted key ``key``) names."""
    return open_source(registry, base, key).base_classes(base, progress)


@in_phase("data")
def load_text_stage_data(
    stage: dict[str, Any],
    registry: Registry,
    progress: Callable[..., Any] | None,
    cache_root: Path | None = None,
    key: str = "oneclass.student_stage",
) -> BaseData:
    """Labelled base-class images oneclass's text-space student stage trains on (the same
    for every seed)."""
    return open_source(registry, stage, key).text_stage(stage, progress, cache_root)


def first_per_class(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` images of every class, in the split's order."""
    if limit is None:
        return np.arange(len(labels))
    seen = np.zeros(labels.max() + 1 if len(labels) else 0, dtype=np.int64)
    keep = []
    for i, y in enumerate(labels.tolist()):
        if seen[y] < limit:
            seen[y] += 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)

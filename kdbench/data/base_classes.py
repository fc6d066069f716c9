"""The labelled base-class images that protocols' student stages train on: the Shapes
world's base split (embedded suite) or a registered dataset on disk (standard suite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key, cached_tensors
from kdbench.data.pool import render_classes
from kdbench.errors import ConfigError
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity


def world_images(
    split: str, per_class: int, seed: int, stream: str, domain: str = "base"
) -> tuple[Any, str]:
    """``ShapesWorld().images(...)``, rendered once and then read from the cache (rendering
    is the slow part of the embedded suite's data); returns the images and their digest."""
    from kdbench.world import WORLD_VERSION, LabelledImages, ShapesWorld

    world = ShapesWorld()
    key = cache_key("world-images", WORLD_VERSION, split, per_class, seed, stream, domain)

    def render() -> dict[str, torch.Tensor]:
        data = world.images(split, per_class, seed, stream, domain)
        return {"images": data.images, "labels": data.labels}

    tensors, _ = cached_tensors("world-images", key, render)
    class_ids = world.classes(split)
    data = LabelledImages(tensors["images"], tensors["labels"], class_ids, world.names(class_ids))
    return data, key


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


def load_base_data(
    base: dict[str, Any], suite: str, registry: Registry, progress: Callable[..., Any] | None = None
) -> BaseData:
    """The labelled base-class images the stage trains on (the same for every seed)."""
    if suite == "embedded":
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        data, digest = world_images("base", base["train_per_class"], 0, "base-stage/train")
        return BaseData(
            lambda: data.images, data.labels, data.names, world.identity(base=len(data)), digest
        )
    if not base.get("root"):
        raise ValueError(f"set the {base['dataset']} folder, e.g. --set fewshot.base.root=PATH")
    split = registry.get("datasets", base["dataset"]).load()(base["root"], base["split"])
    size, resize = base["image_size"], base["resize"]
    identity = DatasetIdentity(
        name=base["dataset"], manifest_sha256=split.manifest_sha256, sizes={"base": len(split)}
    )
    return BaseData(
        lambda: split.load_all(size, resize, progress)[0],
        torch.from_numpy(np.asarray(split.labels, dtype=np.int64)),
        split.classes,
        identity,
        cache_key(split.manifest_sha256, size, resize),
    )


def load_text_stage_data(
    stage: dict[str, Any],
    suite: str,
    registry: Registry,
    progress: Callable[..., Any],
    cache_root: Path | None = None,
) -> BaseData:
    """Labelled base-class images oneclass's text-space student stage trains on (the same
    for every seed): Shapes images rendered in its own stream, or the first
    ``max_per_class`` images of every class of a dataset, named by ``names_file``."""
    if suite == "embedded":
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        class_ids = world.classes("base")
        per_class = stage["train_per_class"]
        images, labels = render_classes(
            world, class_ids, per_class, "oneclass/base", "base", cache_root
        )
        digest = cache_key(world.version, class_ids.tolist(), per_class, "oneclass/base")
        identity = world.identity(base=len(labels))
        return BaseData(images, labels, world.names(class_ids), identity, digest)
    if not stage.get("root"):
        raise ConfigError(
            "the student stage needs labelled base images: --set "
            "oneclass.student_stage.root=PATH (an image folder, root/<split>/<class>/*)"
        )
    split = registry.get("datasets", stage["dataset"]).load()(stage["root"], stage["split"])
    names = list(split.classes)
    if stage.get("names_file"):
        from kdbench.data.layout import read_mapping

        mapping = read_mapping(
            Path(stage["names_file"]),
            ("folder", "names"),
            "a class-name file: '<folder> <name>[, <other names>]' per line",
        )
        names = [mapping.get(n, n).split(",")[0].strip() for n in names]
    keep = _first_per_class(np.asarray(split.labels), stage["max_per_class"])
    indices: Any = keep.tolist()
    if progress is not None:
        indices = progress(indices, desc="decode base images", total=len(keep))
    pixels = np.stack([split.load(i, stage["image_size"], stage["resize"]) for i in indices])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.asarray(split.labels)[keep].astype(np.int64))
    digest = cache_key(split.manifest_sha256, keep.tolist(), stage["image_size"], stage["resize"])
    identity = DatasetIdentity(
        name=stage["dataset"], manifest_sha256=split.manifest_sha256, sizes={"base": len(keep)}
    )
    return BaseData(images, labels, names, identity, digest)


def _first_per_class(labels: np.ndarray, limit: int | None) -> np.ndarray:
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

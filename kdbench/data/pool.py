"""Labelled image pools for zero-shot one-class classification: Shapes images rendered once
(and cached) or a classification split decoded on demand, with each class's taxonomy as
integer codes so that task sampling (:mod:`kdbench.oneclass`) is index arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key, cached_tensors
from kdbench.confusers import LabelSet
from kdbench.data.base import ClassificationSplit
from kdbench.errors import ConfigError
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity
from kdbench.seeding import rng


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
    """uint8 images in memory (embedded suite), or None: decoded from ``split`` on demand."""
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


def render_classes(
    world: Any,
    class_ids: np.ndarray,
    per_class: int,
    stream: str,
    domain: str,
    cache_root: Path | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` Shapes images of every class (labels index ``class_ids``), seed 0,
    rendered once and cached (the world is versioned, so its images are too)."""
    key = cache_key("oneclass-render", world.version, class_ids.tolist(), per_class, stream, domain)

    def render() -> dict[str, torch.Tensor]:
        labels = np.repeat(np.arange(len(class_ids)), per_class)
        labels = labels[rng(0, "oneclass-render", stream).permutation(len(labels))]
        pixels = world.render(class_ids[labels], 0, stream, domain)
        return {"images": torch.from_numpy(pixels), "labels": torch.from_numpy(labels)}

    out, _ = cached_tensors("oneclass-render", key, render, cache_root)
    return out["images"], out["labels"]


def shapes_pool(
    splits: Sequence[str], per_class: int, domain: str, cache_root: Path | None = None
) -> Pool:
    """``per_class`` Shapes images of every class of the world's ``splits``, rendered in
    memory (and cached); the label vocabulary is every class of the world."""
    from kdbench.world import ShapesWorld
    from kdbench.world.taxonomy import LEVELS

    world = ShapesWorld()
    taxonomy = world.taxonomy
    class_ids = np.concatenate([world.classes(s) for s in splits])
    images, labels_t = render_classes(
        world, class_ids, per_class, "oneclass/eval", domain, cache_root
    )
    labels = labels_t.numpy()
    every = [c.name for c in taxonomy.classes]
    vocabulary = LabelSet(
        "shapes",
        tuple(every),
        tuple(c.lineage for c in taxonomy.classes),
        LEVELS,
        world.version,
    )
    lineages = [taxonomy.classes[i].lineage for i in class_ids]
    digest = cache_key(world.version, class_ids.tolist(), per_class, domain)
    return Pool(
        names=[every[i] for i in class_ids],
        image_labels=labels,
        levels=LEVELS,
        codes=taxonomy_codes(lineages),
        vocabulary=vocabulary,
        text_index=np.asarray(class_ids, dtype=np.int64),
        identity=world.identity(eval=len(labels)),
        digest=digest,
        images=images,
    )


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


def load_pool(
    config: dict[str, Any],
    suite: str,
    registry: Registry,
    progress: Callable[..., Any],
    cache_root: Path | None = None,
) -> Pool:
    """The evaluation pool of ``suite``: Shapes images rendered (and cached) in memory, or a
    dataset split on disk."""
    data = config["data"]
    if suite == "embedded":
        return shapes_pool(data["splits"], data["per_class"], data["domain"], cache_root)
    if not data.get("root"):
        raise ConfigError(
            f"set the {data['dataset']} folder: --set oneclass.data.root=PATH "
            "(layouts: docs/datasets.md)"
        )
    split = registry.get("datasets", data["dataset"]).load()(data["root"], data["split"])
    return dataset_pool(
        data["dataset"], split, image_size=data["image_size"], resize=data["resize"]
    )

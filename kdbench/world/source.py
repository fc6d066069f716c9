"""The Shapes world as a registered dataset (``shapes``): every protocol role's data drawn
from the world, deterministically, each role from its own random stream.

Images are rendered once and cached where they are the slow part (the base classes, the
novel classes and the one-class pool). The streams and orders below are part of what the
committed embedded records measured: changing one changes those records' numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key, cached_tensors, tensor_digest
from kdbench.confusers import LabelSet
from kdbench.data.base_classes import BaseData
from kdbench.data.downstream import TaskData
from kdbench.data.novel import NovelData
from kdbench.data.pool import Pool, taxonomy_codes
from kdbench.data.scenes import SceneData, scene_presence
from kdbench.data.source import DataSource, Progress
from kdbench.seeding import rng


def world_images(
    split: str, per_class: int, seed: int, stream: str, domain: str = "base"
) -> tuple[Any, str]:
    """``ShapesWorld().images(...)``, rendered once and then read from the cache; returns
    the images and their digest."""
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


def shapes_scenes(pool_size: int, eval_size: int, domain: str, max_objects: int) -> SceneData:
    """Shapes scenes: a support pool and an evaluation set, fixed by the world's seed."""
    from kdbench.world import ShapesWorld
    from kdbench.world.world import SCENE_CLASSES

    world = ShapesWorld()
    pool_images, pool_masks = world.scenes(
        pool_size, 0, "segmentation/support-pool", domain, max_objects
    )
    eval_images, eval_masks = world.scenes(eval_size, 0, "segmentation/eval", domain, max_objects)
    classes = list(SCENE_CLASSES)

    def load_pool(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return pool_images[idx], pool_masks[idx]

    return SceneData(
        classes=classes,
        presence=scene_presence(pool_masks, len(classes)),
        load_pool=load_pool,
        eval_images=eval_images,
        eval_masks=eval_masks,
        identity=world.identity(support_pool=len(pool_images), eval=len(eval_images)),
        draws={
            "support_pool": _digest(pool_images, pool_masks),
            "eval": _digest(eval_images, eval_masks),
        },
    )


def _digest(*tensors: torch.Tensor) -> str:
    return cache_key(*[tensor_digest({"t": t}) for t in tensors])


class ShapesSource(DataSource):
    """The Shapes world (:class:`kdbench.world.ShapesWorld`): base classes for student
    stages, novel classes for episodes, downstream tasks with a domain shift, every class
    with its taxonomy for one-class tasks, and scenes with pixel masks."""

    name = "shapes"

    def base_classes(self, section: dict[str, Any], progress: Progress | None) -> BaseData:
        from kdbench.world import ShapesWorld

        data, digest = world_images("base", section["train_per_class"], 0, "base-stage/train")
        identity = ShapesWorld().identity(base=len(data))
        return BaseData(lambda: data.images, data.labels, data.names, identity, digest)

    def text_stage(
        self, section: dict[str, Any], progress: Progress | None, cache_root: Path | None
    ) -> BaseData:
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        class_ids = world.classes("base")
        per_class = section["train_per_class"]
        images, labels = render_classes(
            world, class_ids, per_class, "oneclass/base", "base", cache_root
        )
        digest = cache_key(world.version, class_ids.tolist(), per_class, "oneclass/base")
        identity = world.identity(base=len(labels))
        return BaseData(images, labels, world.names(class_ids), identity, digest)

    def novel(self, config: dict[str, Any], progress: Progress | None) -> NovelData:
        from kdbench.world import ShapesWorld

        novel = config["novel"]
        data, digest = world_images(
            "novel", novel["per_class"], 0, "fewshot/novel", novel["domain"]
        )
        return NovelData(
            lambda: (data.images, data.labels),
            data.labels.numpy(),
            data.names,
            digest,
            ShapesWorld().identity(novel=len(data)),
        )

    def task(self, section: dict[str, Any], seed: int, progress: Progress | None) -> TaskData:
        """The first ``classes`` classes of ``split`` rendered in ``domain``: train images
        drawn per seed, a fixed test set, and unlabelled transfer images of the same classes
        drawn afresh per seed."""
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        split, domain = section["split"], section["domain"]
        classes = world.classes(split)[: section["classes"]]
        train = world.images(
            split, section["train_per_class"], seed, "distill/train", domain, classes
        )
        test = world.images(split, section["test_per_class"], 0, "distill/test", domain, classes)
        count = section["transfer_images"]
        transfer_labels = np.repeat(classes, -(-count // len(classes)))[:count]
        transfer = torch.from_numpy(world.render(transfer_labels, seed, "distill/transfer", domain))
        return TaskData(
            train.images,
            train.labels,
            test.images,
            test.labels,
            transfer,
            train.names,
            world.identity(train=len(train), test=len(test), transfer=len(transfer)),
            {"train": _digest(train.images, train.labels), "transfer": _digest(transfer)},
        )

    def pool(
        self, section: dict[str, Any], progress: Progress | None, cache_root: Path | None
    ) -> Pool:
        return shapes_pool(section["splits"], section["per_class"], section["domain"], cache_root)

    def generic_pool(self, section: dict[str, Any], options: dict[str, Any], request: Any) -> Any:
        """The world's generic pool (:class:`~kdbench.transfer.pool.ShapesPool`): options
        ``per_class`` (images per class and domain, 60; 2 in smoke runs) and ``scenery``
        (images without a labelled object per domain, 1,600; 20 in smoke runs)."""
        from kdbench.transfer.pool import ShapesPool

        smoke = request.smoke
        return ShapesPool(
            per_class=int(options.get("per_class", 2 if smoke else 60)),
            scenery=int(options.get("scenery", 20 if smoke else 1600)),
            cache_root=request.cache_root,
        )

    def scenes(self, config: dict[str, Any], progress: Progress | None) -> SceneData:
        data = config["data"]
        return shapes_scenes(data["pool"], data["eval"], data["domain"], data["max_objects"])


SHAPES = ShapesSource()
"""The registered ``shapes`` dataset."""

"""The novel classes few-shot episodes are drawn from: the Shapes world's novel split
(embedded suite) or a dataset split on disk (standard suite)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key
from kdbench.data.base_classes import world_images
from kdbench.errors import ConfigError
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity


@dataclass
class NovelData:
    """The novel-class images episodes are drawn from, loaded only when features are not
    already cached."""

    load: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    labels: np.ndarray
    class_names: list[str]
    digest: str
    identity: DatasetIdentity


def load_novel(
    config: dict[str, Any], suite: str, registry: Registry, progress: Callable[..., Any]
) -> NovelData:
    """The novel split: Shapes novel classes (embedded) or a dataset split on disk."""
    novel = config["novel"]
    if suite == "embedded":
        from kdbench.world import ShapesWorld

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
    root = novel.get("root") or (
        config["base"].get("root") if novel["dataset"] == config["base"]["dataset"] else None
    )
    if not root:
        raise ConfigError(
            f"set the {novel['dataset']} folder: --set fewshot.base.root=PATH (and "
            "fewshot.novel.root=PATH if the novel classes live elsewhere)"
        )
    split = registry.get("datasets", novel["dataset"]).load()(root, novel["split"])
    return NovelData(
        lambda: split.load_all(novel["image_size"], novel["resize"], progress),
        np.asarray(split.labels, dtype=np.int64),
        list(split.classes),
        cache_key(split.manifest_sha256, novel["image_size"], novel["resize"]),
        DatasetIdentity(
            name=novel["dataset"],
            manifest_sha256=split.manifest_sha256,
            sizes={"novel": len(split)},
        ),
    )


def episodes_identity(base: DatasetIdentity, novel: DatasetIdentity) -> DatasetIdentity:
    """The dataset identity of a few-shot record: the novel classes' source, identified by
    the world version or by both split manifests, with the base and novel sizes."""
    sizes = {"base": base.sizes.get("base", 0), "novel": novel.sizes.get("novel", 0)}
    manifest = None
    if base.manifest_sha256 and novel.manifest_sha256:
        manifest = cache_key(base.manifest_sha256, novel.manifest_sha256)
    return DatasetIdentity(
        name=novel.name, version=novel.version, manifest_sha256=manifest, sizes=sizes
    )

"""The novel classes few-shot episodes are drawn from, from the registered dataset the
``novel`` section names (:mod:`kdbench.data.source`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key
from kdbench.data.source import open_source
from kdbench.phases import in_phase
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
    stream: Callable[..., torch.Tensor] | None = None
    """``stream(model, device, progress)``: ``model`` on every image as it is decoded, the
    outputs in image order (:func:`kdbench.data.decoding.stream_features`), for images
    decoded from files; ``None``: call the model on ``load()``'s images."""


@in_phase("data")
def load_novel(
    config: dict[str, Any], registry: Registry, progress: Callable[..., Any] | None, key: str
) -> NovelData:
    """The novel classes of the dataset ``config['novel']`` (dotted key ``key``) names."""
    return open_source(registry, config["novel"], key).novel(config, progress)


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

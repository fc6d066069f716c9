"""Generic image pools: large unlabelled collections, not curated for any task, that the
``generic`` and ``retrieved`` transfer sets draw from.

A pool is read in chunks, never whole, so it may hold a million images: ``chunk(i)`` gives
chunk ``i``'s images (uint8 N x 3 x S x S) and ``load(indices)`` any images by index. Its
``version`` is a digest of what it holds (the world version and sizes, or the file list),
so caches keyed by it are invalidated when the pool changes.

- :class:`ShapesPool`: the Shapes world's generic pool, rendered lazily and deterministically
  one chunk at a time (each chunk cached): every class of every split in both domains, plus
  images of background and clutter alone. Its images know their class and domain, so the
  composition of a set drawn from it can be reported.
- :class:`FolderPool`: any folder of images on disk (ImageNet's ``train``, or any other),
  listed recursively and decoded on demand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from kdbench.cache import cache_key, cached_tensors
from kdbench.errors import ConfigError

POOL_CHUNK = 4096
"""Images per chunk: the unit of rendering, decoding, caching and embedding."""

SHAPES_POOL_VERSION = 1
"""Bumped when the Shapes pool's composition or order changes (its caches with it)."""


class GenericPool(Protocol):
    """What the transfer sets read from a pool."""

    name: str
    """What the record calls the pool (``shapes-generic``, or the folder's name)."""
    version: str
    """A digest of the pool's content: caches of its images and embeddings are keyed by it."""

    def __len__(self) -> int: ...

    def chunk_count(self) -> int:
        """How many chunks of :data:`POOL_CHUNK` images the pool has."""

    def chunk(self, index: int) -> torch.Tensor:
        """Images ``[index * POOL_CHUNK, (index + 1) * POOL_CHUNK)`` as uint8 N x 3 x S x S."""

    def load(self, indices: np.ndarray) -> torch.Tensor:
        """The images at ``indices``, in that order."""

    def image_ids(self, indices: np.ndarray) -> list[str]:
        """Stable names of the images at ``indices`` (the record hashes the list)."""

    def describe(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        """Per image, what is known of it (``class``: class name or ``""``, ``domain``), or
        None for an unlabelled pool."""


def _load_by_chunk(pool: GenericPool, indices: np.ndarray) -> torch.Tensor:
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(pool)):
        raise IndexError(f"pool {pool.name} has {len(pool)} images")
    parts: dict[int, torch.Tensor] = {}
    for c in np.unique(indices // POOL_CHUNK):
        parts[int(c)] = pool.chunk(int(c))
    if not len(indices):
        first = pool.chunk(0)
        return first[:0]
    out = torch.empty((len(indices), *next(iter(parts.values())).shape[1:]), dtype=torch.uint8)
    for c, images in parts.items():
        mask = indices // POOL_CHUNK == c
        out[torch.from_numpy(mask)] = images[torch.from_numpy(indices[mask] - c * POOL_CHUNK)]
    return out


@dataclass
class ShapesPool:
    """The Shapes world's generic pool: ``per_class`` images of each of the world's classes
    in each domain, and ``scenery`` images of background and clutter alone per domain, in
    a fixed shuffled order. Chunks are rendered on first use and cached."""

    per_class: int = 60
    scenery: int = 1600
    cache_root: Path | None = None
    name: str = "shapes-generic"

    @cached_property
    def _world(self) -> Any:
        from kdbench.world import ShapesWorld

        return ShapesWorld()

    @cached_property
    def _entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(world class id or -1 for scenery, domain index) per image, in pool order."""
        from kdbench.seeding import rng
        from kdbench.world.render import DOMAINS

        classes = np.arange(len(self._world.taxonomy))
        ids, domains = [], []
        for d in range(len(DOMAINS)):
            ids += [np.repeat(classes, self.per_class), np.full(self.scenery, -1)]
            domains += [np.full(len(classes) * self.per_class + self.scenery, d)]
        class_ids, domain_ids = np.concatenate(ids), np.concatenate(domains)
        order = rng(0, "transfer-pool", "order", self.version).permutation(len(class_ids))
        return class_ids[order], domain_ids[order]

    @cached_property
    def version(self) -> str:  # type: ignore[override]
        from kdbench.world import WORLD_VERSION

        parts = (SHAPES_POOL_VERSION, WORLD_VERSION, self.per_class, self.scenery)
        return cache_key("shapes-pool", *parts)[:16]

    def __len__(self) -> int:
        return len(self._entries[0])

    def chunk_count(self) -> int:
        return -(-len(self) // POOL_CHUNK)

    def chunk(self, index: int) -> torch.Tensor:
        from kdbench.world.render import DOMAINS

        start = index * POOL_CHUNK
        class_ids, domain_ids = (a[start : start + POOL_CHUNK] for a in self._entries)

        def render() -> dict[str, torch.Tensor]:
            out = np.empty((len(class_ids), 3, 32, 32), dtype=np.uint8)
            for d, domain in enumerate(DOMAINS):
                stream = f"transfer-pool/{self.version}/{index}"
                objects = (domain_ids == d) & (class_ids >= 0)
                scenery = (domain_ids == d) & (class_ids < 0)
                out[objects] = self._world.render(class_ids[objects], 0, stream, domain)
                out[scenery] = self._world.render_scenery(int(scenery.sum()), 0, stream, domain)
            return {"images": torch.from_numpy(out)}

        key = cache_key("shapes-pool-chunk", self.version, index)
        return cached_tensors("transfer-pool", key, render, self.cache_root)[0]["images"]

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return _load_by_chunk(self, indices)

    def image_ids(self, indices: np.ndarray) -> list[str]:
        return [f"{self.name}/{self.version}/{int(i)}" for i in indices]

    def describe(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        from kdbench.world.render import DOMAINS

        class_ids, domain_ids = (a[np.asarray(indices, dtype=np.int64)] for a in self._entries)
        names = np.array(["", *self._world.names(np.arange(len(self._world.taxonomy)))])
        return {"class": names[class_ids + 1], "domain": np.array(DOMAINS)[domain_ids]}


@dataclass
class FolderPool:
    """Every image file below ``root`` (sorted by path), decoded at ``size`` (shorter side
    resized to ``resize``, centre crop) when a chunk is read."""

    root: Path
    size: int
    resize: int | None = None
    progress: Callable[..., Any] | None = None
    files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        from kdbench.data.layout import list_images

        root = Path(self.root)
        if not root.is_dir():
            what = "a file" if root.exists() else "missing"
            raise ConfigError(
                f"the generic pool {root} is not an image folder ({what}); give a folder of "
                "images, e.g. ImageNet's train folder: --set distill.transfer=retrieved:pool=PATH"
            )
        self.root = root
        self.files = list_images(root, recursive=True)
        if not self.files:
            raise ConfigError(
                f"the generic pool {root} is not an image folder: it holds no image files "
                "(.jpg, .jpeg, .png, ...) at any depth"
            )

    @property
    def name(self) -> str:
        return self.root.name or str(self.root)

    @cached_property
    def version(self) -> str:  # type: ignore[override]
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\n")
        return cache_key("folder-pool", digest.hexdigest(), self.size, self.resize)[:16]

    def __len__(self) -> int:
        return len(self.files)

    def chunk_count(self) -> int:
        return -(-len(self) // POOL_CHUNK)

    def chunk(self, index: int) -> torch.Tensor:
        return self.load(np.arange(index * POOL_CHUNK, min(len(self), (index + 1) * POOL_CHUNK)))

    def load(self, indices: np.ndarray) -> torch.Tensor:
        from kdbench.data.base import load_rgb

        pixels = [load_rgb(self.files[int(i)], self.size, self.resize) for i in indices]
        if not pixels:
            return torch.zeros((0, 3, self.size, self.size), dtype=torch.uint8)
        return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()

    def image_ids(self, indices: np.ndarray) -> list[str]:
        return [self.files[int(i)].relative_to(self.root).as_posix() for i in indices]

    def describe(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        return None


def iter_chunks(pool: GenericPool) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first index, images)`` of every chunk, in order."""
    for c in range(pool.chunk_count()):
        yield c * POOL_CHUNK, pool.chunk(c)

"""The Shapes world: class splits, labelled image sets and segmentation scenes.

Everything is a pure function of ``(seed, stream, labels)``: images are drawn in fixed
chunks of :data:`CHUNK`, each from its own named random stream, so the same call always
gives the same bytes and adding a draw elsewhere never shifts this one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from kdbench.results import DatasetIdentity
from kdbench.seeding import rng
from kdbench.world import render
from kdbench.world.taxonomy import COLOURS, PATTERNS, SHAPES, Taxonomy

WORLD_VERSION = "1"
CHUNK = 256
SPLITS = ("base", "novel", "downstream")
SPLIT_SIZES = {"base": 120, "novel": 60, "downstream": 60}
SPLIT_SEED = 2024  # part of the world's definition, not of a run
IGNORE = 255
SCENE_CLASSES = ("background", *SHAPES)

#: Rendered arrays kept in memory for the next units of a run (least recently used first
#: out), in bytes: a unit's images are rendered again by every method of its seed otherwise.
RENDERED_BYTES = 256 * 2**20
_rendered: OrderedDict[tuple[object, ...], tuple[np.ndarray, ...]] = OrderedDict()


def _remembered(
    key: tuple[object, ...], make: Callable[[], tuple[np.ndarray, ...]]
) -> tuple[np.ndarray, ...]:
    """``make()``, or a copy of what it gave for ``key`` before in this process.

    Rendering is a pure function of its arguments (the module's docstring), so a kept
    result is the same bytes; callers get copies, so no caller can change another's.
    Results over a quarter of :data:`RENDERED_BYTES` are not kept.
    """
    kept = _rendered.get(key)
    if kept is None:
        made = make()
        if sum(a.nbytes for a in made) > RENDERED_BYTES // 4:
            return made  # not kept: the caller may have the only copy
        _rendered[key] = kept = made
        while sum(a.nbytes for v in _rendered.values() for a in v) > RENDERED_BYTES:
            _rendered.popitem(last=False)
    else:
        _rendered.move_to_end(key)
    return tuple(a.copy() for a in kept)


@dataclass
class LabelledImages:
    """Images of some classes: uint8 (N, 3, S, S), labels 0..C-1, and what each label is."""

    images: torch.Tensor
    labels: torch.Tensor
    class_ids: np.ndarray  # label -> world class index
    names: list[str]  # label -> class name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.names)


class ShapesWorld:
    """The embedded suite's data: deterministic, versioned, generated on the fly."""

    version = WORLD_VERSION

    def __init__(self, image_size: int = 32, scene_size: int = 64) -> None:
        self.image_size = image_size
        self.scene_size = scene_size
        self.taxonomy = Taxonomy()

    def identity(self, **sizes: int) -> DatasetIdentity:
        return DatasetIdentity(name="shapes", version=self.version, sizes=dict(sizes))

    # -- classes -------------------------------------------------------------------------
    @cached_property
    def _split_of(self) -> dict[str, np.ndarray]:
        order = rng(SPLIT_SEED, "class-splits").permutation(len(self.taxonomy))
        out, start = {}, 0
        for name in SPLITS:
            out[name] = np.sort(order[start : start + SPLIT_SIZES[name]])
            start += SPLIT_SIZES[name]
        codes = self.taxonomy.attribute_codes()[out["base"]]
        for column, words in enumerate((COLOURS, SHAPES, PATTERNS)):
            assert len(np.unique(codes[:, column])) == len(words), "base lacks a word"
        return out

    def classes(self, split: str) -> np.ndarray:
        """World class indices of a split (``base``, ``novel`` or ``downstream``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown Shapes split {split!r}; splits are {', '.join(SPLITS)}")
        return self._split_of[split]

    def names(self, class_ids: np.ndarray) -> list[str]:
        return [self.taxonomy.classes[i].name for i in class_ids]

    # -- images --------------------------------------------------------------------------
    def render(
        self, class_ids: np.ndarray, seed: int, stream: str, domain: str = "base"
    ) -> np.ndarray:
        """One image per entry of ``class_ids``: uint8 (N, 3, S, S)."""
        class_ids = np.asarray(class_ids, dtype=np.int64)
        ids = hashlib.sha256(class_ids.tobytes()).hexdigest()
        key = ("images", self.version, self.image_size, ids, seed, stream, domain)
        (out,) = _remembered(key, lambda: (self._render(class_ids, seed, stream, domain),))
        return out

    def _render(self, class_ids: np.ndarray, seed: int, stream: str, domain: str) -> np.ndarray:
        codes = self.taxonomy.attribute_codes()[class_ids]
        res = self.image_size * render.SUPERSAMPLE
        out = np.empty((len(class_ids), 3, self.image_size, self.image_size), dtype=np.uint8)
        for start in range(0, len(class_ids), CHUNK):
            c = codes[start : start + CHUNK]
            g = rng(seed, "images", stream, domain, start // CHUNK)
            canvas = render.background(g, len(c), res, domain)
            render.clutter(g, len(c), res, canvas, count=3)
            objects = render.draw_objects(g, c[:, 0], c[:, 1], c[:, 2], (0.45, 0.75), 0.2)
            render.paint(canvas, objects)
            out[start : start + len(c)] = render.finish(g, canvas, domain)
        return out

    def render_scenery(self, n: int, seed: int, stream: str, domain: str = "base") -> np.ndarray:
        """``n`` images of background and clutter alone, without a labelled object: uint8
        (N, 3, S, S). The generic transfer pool mixes them in as distractors."""
        res = self.image_size * render.SUPERSAMPLE
        out = np.empty((n, 3, self.image_size, self.image_size), dtype=np.uint8)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            g = rng(seed, "scenery", stream, domain, start // CHUNK)
            canvas = render.background(g, m, res, domain)
            render.clutter(g, m, res, canvas, count=3)
            out[start : start + m] = render.finish(g, canvas, domain)
        return out

    def images(
        self,
        split: str,
        per_class: int,
        seed: int,
        stream: str,
        domain: str = "base",
        classes: np.ndarray | None = None,
    ) -> LabelledImages:
        """``per_class`` images of every class of ``split`` (or of ``classes`` from it)."""
        class_ids = self.classes(split) if classes is None else np.asarray(classes)
        labels = np.repeat(np.arange(len(class_ids)), per_class)
        order = rng(seed, "order", split, stream).permutation(len(labels))
        labels = labels[order]
        pixels = self.render(class_ids[labels], seed, f"{split}/{stream}", domain)
        return LabelledImages(
            images=torch.from_numpy(pixels),
            labels=torch.from_numpy(labels.astype(np.int64)),
            class_ids=class_ids,
            names=self.names(class_ids),
        )

    # -- scenes --------------------------------------------------------------------------
    def scenes(
        self, n: int, seed: int, stream: str, domain: str = "base", max_objects: int = 4
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` scenes of 2..``max_objects`` objects: uint8 images (N, 3, S, S) and uint8
        masks (N, S, S) labelled by shape (0 background, 1..6 as :data:`SCENE_CLASSES`),
        with :data:`IGNORE` where a pixel is partly covered (edges, overlaps)."""
        key = ("scenes", self.version, self.scene_size, n, seed, stream, domain, max_objects)
        images, masks = _remembered(key, lambda: self._scenes(n, seed, stream, domain, max_objects))
        return torch.from_numpy(images), torch.from_numpy(masks)

    def _scenes(
        self, n: int, seed: int, stream: str, domain: str, max_objects: int
    ) -> tuple[np.ndarray, np.ndarray]:
        size = self.scene_size
        res = size * render.SUPERSAMPLE
        images = np.empty((n, 3, size, size), dtype=np.uint8)
        masks = np.empty((n, size, size), dtype=np.uint8)
        n_classes = len(self.taxonomy)
        codes_all = self.taxonomy.attribute_codes()
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            g = rng(seed, "scenes", stream, domain, start // CHUNK)
            canvas = render.background(g, m, res, domain)
            render.clutter(g, m, res, canvas, count=3)
            count = g.integers(2, max_objects + 1, m)
            mask = np.zeros((m, size, size), dtype=np.uint8)
            for slot in range(max_objects):
                codes = codes_all[g.integers(0, n_classes, m)]
                objects = render.draw_objects(
                    g, codes[:, 0], codes[:, 1], codes[:, 2], (0.22, 0.4), 0.6
                )
                objects.present = slot < count
                cov = render.downsample_coverage(render.paint(canvas, objects))
                label = (codes[:, 1] + 1).astype(np.uint8)[:, None, None]
                mask = np.where(cov >= 0.75, label, mask)
                mask = np.where((cov > 0.25) & (cov < 0.75), np.uint8(IGNORE), mask)
            images[start : start + m] = render.finish(g, canvas, domain)
            masks[start : start + m] = mask
        return images, masks

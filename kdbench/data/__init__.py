"""The built-in datasets: the Shapes world, and loaders for real datasets in their published
on-disk layouts.

A dataset of files is registered as its loader ``load_<name>(root, split, **options)``,
which returns a :class:`~kdbench.data.base.ClassificationSplit` or
:class:`~kdbench.data.base.SegmentationSplit` (``docs/datasets.md`` shows the layout each one
expects); a generated world registers a :class:`~kdbench.data.source.DataSource`. Protocols
read either through :func:`kdbench.data.source.open_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DATASETS: tuple[tuple[str, str, str], ...] = (
    (
        "shapes",
        "kdbench.world.source:SHAPES",
        "The Shapes world, generated in-process (the embedded suite's data; no root).",
    ),
    (
        "imagefolder",
        "kdbench.data.imagefolder:load_imagefolder",
        "Any classification dataset stored as root/<split>/<class>/<image>.",
    ),
    (
        "miniimagenet",
        "kdbench.data.miniimagenet:load_miniimagenet",
        "miniImageNet, Ravi–Larochelle split: 64 / 16 / 20 classes of 600 images.",
    ),
    (
        "cub",
        "kdbench.data.cub:load_cub",
        "CUB-200-2011 birds, 200 species, official train / test split (5,994 / 5,794).",
    ),
    (
        "aircraft",
        "kdbench.data.aircraft:load_aircraft",
        "FGVC-Aircraft 2013b, 100 variants, trainval / test (6,667 / 3,333).",
    ),
    (
        "dtd",
        "kdbench.data.dtd:load_dtd",
        "Describable Textures, 47 categories, official splits 1-10 (default 1).",
    ),
    (
        "imagenet-val",
        "kdbench.data.imagenet:load_imagenet_val",
        "ImageNet-1k validation set, 50,000 images (class-folder or Kaggle layout).",
    ),
    (
        "inat2021",
        "kdbench.data.inaturalist:load_inat2021",
        "iNaturalist 2021, 10,000 species with their taxonomy (val: 100,000 images).",
    ),
    (
        "cityscapes",
        "kdbench.data.cityscapes:load_cityscapes",
        "Cityscapes fine labels, 19 train-id classes, train / val (2,975 / 500).",
    ),
    (
        "coco",
        "kdbench.data.coco:load_coco",
        "COCO 2017 as semantic segmentation: background + 80 categories, overlaps ignored.",
    ),
    (
        "voc",
        "kdbench.data.voc:load_voc",
        "PASCAL VOC-style segmentation folder (21 VOC classes or a classes.txt).",
    ),
)
"""(registered name, import path of the loader, one-line description)."""


def register_datasets(register: Callable[..., Any]) -> None:
    """Register every loader of this package by import path (imported on first use)."""
    for name, target, description in DATASETS:
        register(target, name=name, description=description)

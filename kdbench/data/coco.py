"""COCO 2017 as semantic segmentation: the 80 instance categories plus background."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdbench.data.base import IGNORE_INDEX, DatasetError, SegmentationSplit, require_split
from kdbench.data.coco_masks import segmentation_mask
from kdbench.data.layout import read_json

SPLIT_SIZES = {"train": 118_287, "val": 5_000}
BACKGROUND = "background"


@dataclass(frozen=True)
class CocoInstance:
    """One annotated object: its semantic label (1..80), crowd flag and segmentation."""

    annotation_id: int
    label: int
    iscrowd: bool
    segmentation: Any


@dataclass(frozen=True)
class CocoInstances:
    """Everything needed to draw one image's semantic mask; ``str`` is the stable
    ``annotations/instances_<split>2017.json#<image_id>`` that names it in manifests."""

    source: str
    height: int
    width: int
    instances: tuple[CocoInstance, ...]

    def __str__(self) -> str:
        return self.source

    @property
    def labels(self) -> tuple[int, ...]:
        """The classes of the image's non-crowd instances, sorted."""
        return tuple(sorted({i.label for i in self.instances if not i.iscrowd}))


def semantic_mask(image: CocoInstances) -> np.ndarray:
    """uint8 HxW mask: 0 background, each instance's label on its pixels, ``IGNORE_INDEX``
    where two or more instances overlap and on crowd regions."""
    labels = np.zeros((image.height, image.width), dtype=np.uint8)
    covered = np.zeros((image.height, image.width), dtype=np.int32)
    crowd = np.zeros((image.height, image.width), dtype=bool)
    for instance in image.instances:
        try:
            mask = segmentation_mask(instance.segmentation, image.height, image.width)
        except DatasetError as exc:
            where = f"{image.source}, annotation {instance.annotation_id}"
            raise DatasetError(f"{where}: {exc}") from None
        if instance.iscrowd:
            crowd |= mask
        else:
            labels[mask] = instance.label
            covered += mask
    labels[(covered > 1) | crowd] = IGNORE_INDEX
    return labels


def load_coco(root: str | Path, split: str) -> SegmentationSplit:
    """COCO 2017 semantic masks drawn from the instance annotations, the convention of
    the few-shot segmentation protocol (arXiv 2401.11311): background 0, the 80 categories
    in category-id order as 1..80, overlaps of instances and crowd regions ignored (255).

    Layout (the official 2017 archives unpacked in one folder)::

        coco/
          annotations/instances_train2017.json
          annotations/instances_val2017.json
          train2017/<nnnnnnnnnnnn>.jpg
          val2017/<nnnnnnnnnnnn>.jpg

    Every image of the annotation file is in the split (images without instances are all
    background). ``meta["image_classes"]`` lists per image the classes of its non-crowd
    instances, enough to draw k images per class without decoding masks.
    """
    root = Path(root)
    require_split(split, SPLIT_SIZES, "coco")
    index_file = root / "annotations" / f"instances_{split}2017.json"
    what = (
        f"the COCO 2017 instance annotations annotations/instances_{split}2017.json in {root} "
        f"(from annotations_trainval2017.zip) next to the {split}2017/ image folder"
    )
    data = read_json(index_file, ("images", "annotations", "categories"), what)
    source = index_file.relative_to(root).as_posix()
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        label_of = {c["id"]: label for label, c in enumerate(categories, start=1)}
        instances = defaultdict(list)
        for a in data["annotations"]:
            if a["category_id"] not in label_of:
                raise DatasetError(
                    f"{index_file}: annotation {a['id']} has unknown category_id {a['category_id']}"
                )
            instance = CocoInstance(
                a["id"], label_of[a["category_id"]], bool(a.get("iscrowd", 0)), a["segmentation"]
            )
            instances[a["image_id"]].append(instance)
        items = [
            (
                root / f"{split}2017" / image["file_name"],
                CocoInstances(
                    f"{source}#{image['id']}",
                    int(image["height"]),
                    int(image["width"]),
                    tuple(instances.pop(image["id"], ())),
                ),
            )
            for image in data["images"]
        ]
        classes = [BACKGROUND, *(c["name"] for c in categories)]
    except (KeyError, TypeError) as exc:
        problem = f"{index_file}: an entry lacks the field {exc}; expected {what}"
        raise DatasetError(problem) from None
    if len(classes) > IGNORE_INDEX:
        raise DatasetError(
            f"{index_file} has {len(categories)} categories; at most {IGNORE_INDEX - 1} fit "
            f"below the ignore index {IGNORE_INDEX}"
        )
    if instances:
        raise DatasetError(
            f"{index_file}: annotations refer to image id(s) {sorted(instances)[:5]} that are not "
            "in its images list"
        )
    dataset = SegmentationSplit.from_items(
        "coco",
        split,
        root,
        items,
        classes,
        semantic_mask,
        listed_by=str(index_file),
        meta={"official_size": SPLIT_SIZES[split], "category_ids": [c["id"] for c in categories]},
    )
    dataset.meta["image_classes"] = [image.labels for image in dataset.masks]
    return dataset

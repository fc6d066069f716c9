"""Cityscapes fine annotations: 19 evaluated classes (train ids), 255 ignored."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import (
    DatasetError,
    DatasetNotFoundError,
    SegmentationSplit,
    load_label_image,
    require,
    require_split,
)

SPLIT_SIZES = {"train": 2975, "val": 500}
CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


def load_cityscapes(root: str | Path, split: str) -> SegmentationSplit:
    """Cityscapes ``gtFine`` (Cordts et al., CVPR 2016) with the official train/val split;
    test labels are withheld by the benchmark server, so there is no test split here.

    Layout (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` unpacked in one
    folder, then cityscapesscripts' ``createTrainIdLabelImgs`` run on it)::

        cityscapes/
          leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
          gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

    Masks hold train ids 0..18 (the 19 classes in :data:`CLASSES` order) and 255 (ignored).
    """
    root = Path(root)
    require_split(split, SPLIT_SIZES, "cityscapes")
    images = require(
        root / "leftImg8bit" / split,
        f"the Cityscapes images leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX} in {root} "
        "(from leftImg8bit_trainvaltest.zip)",
    )
    masks = require(
        root / "gtFine" / split,
        f"the Cityscapes fine labels gtFine/{split}/<city>/*{TRAIN_IDS_SUFFIX} in {root} "
        "(from gtFine_trainvaltest.zip)",
    )
    items = []
    for image in sorted(images.glob(f"*/*{IMAGE_SUFFIX}")):
        stem = image.name[: -len(IMAGE_SUFFIX)]
        items.append((image, masks / image.parent.name / f"{stem}{TRAIN_IDS_SUFFIX}"))
    if not items:
        raise DatasetNotFoundError(f"{images} holds no <city>/*{IMAGE_SUFFIX} images")
    _require_train_ids(root, [mask for _, mask in items])
    return SegmentationSplit.from_items(
        "cityscapes",
        split,
        root,
        items,
        CLASSES,
        load_label_image,
        listed_by=f"{images} and {masks}",
        meta={"official_size": SPLIT_SIZES[split]},
    )


def _require_train_ids(root: Path, masks: list[Path]) -> None:
    """Refuse a split whose train-id masks are missing, saying how to make them."""
    missing = [mask for mask in masks if not mask.is_file()]
    if not missing:
        return
    label_ids = missing[0].with_name(missing[0].name.replace(TRAIN_IDS_SUFFIX, LABEL_IDS_SUFFIX))
    if label_ids.is_file():
        raise DatasetError(
            f"{missing[0]} does not exist, but {label_ids.name} does: {len(missing)} mask(s) "
            f"have only label ids (34 classes), not the 19 train ids. Make the "
            f"*{TRAIN_IDS_SUFFIX} files with cityscapesscripts: "
            f"CITYSCAPES_DATASET={root} python -m "
            "cityscapesscripts.preparation.createTrainIdLabelImgs"
        )
    raise DatasetNotFoundError(
        f"{len(missing)} image(s) have no fine label; first missing: {missing[0]} "
        f"(expected one *{TRAIN_IDS_SUFFIX} per *{IMAGE_SUFFIX})"
    )

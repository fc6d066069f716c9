"""PASCAL VOC-style semantic segmentation: JPEG images, palette PNG masks, split lists."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import SegmentationSplit, load_label_image, require, require_split
from kdbench.data.layout import read_lines

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
SPLIT_SIZES = {"train": 1464, "val": 1449, "trainval": 2913}
CLASSES_FILE = "classes.txt"


def load_voc(
    root: str | Path, split: str, mask_dir: str = "SegmentationClass"
) -> SegmentationSplit:
    """A VOC-style segmentation split listed in ``ImageSets/Segmentation/<split>.txt``.

    Layout (``VOCdevkit/VOC2012`` of the PASCAL VOC 2012 archive, or any dataset in its form)::

        VOC2012/
          JPEGImages/<id>.jpg
          SegmentationClass/<id>.png        palette PNG: pixel value = class index, 255 ignored
          ImageSets/Segmentation/train.txt  one <id> per line (also val.txt, trainval.txt, ...)
          classes.txt                       optional: one class name per line, index order

    The splits are the lists in ``ImageSets/Segmentation``. Classes are the 21 VOC names
    (background first) unless ``classes.txt`` names others. ``mask_dir`` picks another mask
    folder (e.g. ``SegmentationClassAug`` of the SBD-augmented set).
    """
    root = Path(root)
    what = (
        f"a VOC-style folder {root} with JPEGImages/, {mask_dir}/ and "
        "ImageSets/Segmentation/<split>.txt (for PASCAL VOC 2012: VOCdevkit/VOC2012)"
    )
    lists = require(root / "ImageSets" / "Segmentation", what)
    require(root / mask_dir, what)
    require_split(split, sorted(p.stem for p in lists.glob("*.txt")), f"the VOC folder {root}")
    classes_file = root / CLASSES_FILE
    classes = read_lines(classes_file, what) if classes_file.exists() else list(VOC_CLASSES)
    index_file = lists / f"{split}.txt"
    items = [
        (root / "JPEGImages" / f"{image_id}.jpg", root / mask_dir / f"{image_id}.png")
        for image_id in (line.split()[0] for line in read_lines(index_file, what))
    ]
    meta = {"classes_file": classes_file.exists()}
    if not classes_file.exists() and split in SPLIT_SIZES:
        meta["official_size"] = SPLIT_SIZES[split]
    return SegmentationSplit.from_items(
        "voc", split, root, items, classes, load_label_image, listed_by=str(index_file), meta=meta
    )

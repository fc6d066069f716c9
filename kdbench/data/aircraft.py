"""FGVC-Aircraft 2013b: aircraft photographs at three label levels, the official splits."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import ClassificationSplit, DatasetError, require, require_split
from kdbench.data.layout import read_lines, read_table

SPLIT_SIZES = {"train": 3334, "val": 3333, "trainval": 6667, "test": 3333}
LEVEL_FILES = {
    "variant": "variants.txt",
    "family": "families.txt",
    "manufacturer": "manufacturers.txt",
}


def load_aircraft(root: str | Path, split: str, level: str = "variant") -> ClassificationSplit:
    """FGVC-Aircraft by the official split files ``images_<level>_<split>.txt``.

    Layout (the ``fgvc-aircraft-2013b`` folder of the official archive)::

        fgvc-aircraft-2013b/
          data/
            images/<image_id>.jpg
            images_variant_{train,val,trainval,test}.txt   <image_id> <variant name>
            variants.txt                                    one variant name per line
            (images_family_*.txt, families.txt, images_manufacturer_*.txt, manufacturers.txt)

    ``level`` is ``variant`` (100 classes, the usual benchmark), ``family`` (70) or
    ``manufacturer`` (30); labels follow the line order of ``variants.txt`` (or the level's
    list). Images keep the 20-pixel copyright banner at the bottom (as torchvision does).
    """
    root = Path(root)
    require_split(split, SPLIT_SIZES, "aircraft")
    if level not in LEVEL_FILES:
        raise DatasetError(
            f"unknown FGVC-Aircraft level {level!r}; valid levels: {', '.join(LEVEL_FILES)}"
        )
    data = root / "data"
    what = (
        f"the FGVC-Aircraft 2013b folder {root} containing data/images/ and "
        f"data/images_{level}_<split>.txt; pass the fgvc-aircraft-2013b folder of the "
        "official archive"
    )
    require(data, what)
    class_file = data / LEVEL_FILES[level]
    classes = read_lines(class_file, what)
    label_of = {name: label for label, name in enumerate(classes)}
    index_file = data / f"images_{level}_{split}.txt"
    items = []
    for image_id, name in read_table(index_file, ("image_id", level), what):
        if name not in label_of:
            raise DatasetError(
                f"{index_file}: {level} {name!r} of image {image_id} is not in {class_file}"
            )
        items.append((data / "images" / f"{image_id}.jpg", label_of[name]))
    return ClassificationSplit.from_items(
        "aircraft",
        split,
        root,
        items,
        classes,
        listed_by=str(index_file),
        meta={"official_size": SPLIT_SIZES[split], "level": level},
    )

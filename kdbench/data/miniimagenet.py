"""miniImageNet with the Ravi–Larochelle class split: 64 train, 16 val, 20 test classes."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import ClassificationSplit, require, require_split
from kdbench.data.layout import read_csv

SPLIT_CLASSES = {"train": 64, "val": 16, "test": 20}
IMAGES_PER_CLASS = 600


def load_miniimagenet(root: str | Path, split: str) -> ClassificationSplit:
    """miniImageNet by the Ravi & Larochelle (ICLR 2017) split files.

    Layout (the common one: the split CSVs next to one folder of all images)::

        miniimagenet/
          train.csv   header "filename,label"; rows n0153282900000005.jpg,n01532829
          val.csv
          test.csv
          images/<filename>

    Classes are the split's wnids in sorted order (64 / 16 / 20 with 600 images each in the
    real data). The few-shot protocol decodes at 84 px: ``load_all(84, resize=92)``.
    """
    root = Path(root)
    require_split(split, SPLIT_CLASSES, "miniimagenet")
    what = (
        f"the Ravi–Larochelle split files train.csv, val.csv, test.csv (header "
        f"'filename,label') and an images/ folder in {root}"
    )
    require(root, what)
    index_file = root / f"{split}.csv"
    rows = read_csv(index_file, ("filename", "label"), what)
    classes = sorted({row["label"] for row in rows})
    label_of = {wnid: label for label, wnid in enumerate(classes)}
    items = [(root / "images" / row["filename"], label_of[row["label"]]) for row in rows]
    return ClassificationSplit.from_items(
        "miniimagenet",
        split,
        root,
        items,
        classes,
        listed_by=str(index_file),
        meta={
            "official_size": SPLIT_CLASSES[split] * IMAGES_PER_CLASS,
            "official_classes": SPLIT_CLASSES[split],
        },
    )

"""DTD, the Describable Textures Dataset: 47 texture categories, ten official splits."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import ClassificationSplit, DatasetError, require, require_split
from kdbench.data.layout import list_folders, read_lines

SPLIT_SIZES = {"train": 1880, "val": 1880, "test": 1880, "trainval": 3760}
FOLDS = range(1, 11)


def load_dtd(root: str | Path, split: str, fold: int = 1) -> ClassificationSplit:
    """DTD by the official split files ``labels/{train,val,test}<fold>.txt`` (fold 1 by
    default, as the distillation literature reports); ``trainval`` joins train and val.

    Layout (the ``dtd`` folder of the official archive)::

        dtd/
          images/<category>/<category>_<nnnn>.jpg
          labels/train1.txt ... train10.txt     <category>/<file>.jpg, one per line
          labels/val1.txt   ... val10.txt
          labels/test1.txt  ... test10.txt

    Classes are the sub-folders of ``images/`` in sorted order (the same for every split).
    """
    root = Path(root)
    require_split(split, SPLIT_SIZES, "dtd")
    if fold not in FOLDS:
        raise DatasetError(f"DTD fold {fold!r} does not exist; folds are 1 to 10")
    what = (
        f"the DTD folder {root} containing images/<category>/ and labels/<split><fold>.txt; "
        "pass the dtd folder of the official archive"
    )
    images = require(root / "images", what)
    classes = [folder.name for folder in list_folders(images)]
    label_of = {name: label for label, name in enumerate(classes)}
    parts = ("train", "val") if split == "trainval" else (split,)
    items = []
    for part in parts:
        index_file = root / "labels" / f"{part}{fold}.txt"
        for line in read_lines(index_file, what):
            category = line.split("/", 1)[0]
            if category not in label_of:
                raise DatasetError(
                    f"{index_file}: {line!r} names category {category!r}, which has no folder "
                    f"in {images}"
                )
            items.append((images / line, label_of[category]))
    return ClassificationSplit.from_items(
        "dtd",
        split,
        root,
        items,
        classes,
        listed_by=f"{root / 'labels'} ({split}, fold {fold})",
        meta={"official_size": SPLIT_SIZES[split], "fold": fold},
    )

"""CUB-200-2011 (Caltech-UCSD Birds): 200 species, the official train/test split."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import ClassificationSplit, DatasetError, require, require_split
from kdbench.data.layout import read_mapping

SPLIT_SIZES = {"train": 5994, "test": 5794}


def load_cub(root: str | Path, split: str) -> ClassificationSplit:
    """CUB-200-2011 by its official split file (``train_test_split.txt``: 1 = train).

    Layout (the ``CUB_200_2011`` folder of the official archive)::

        CUB_200_2011/
          images.txt               <image_id> <class folder>/<file>.jpg
          image_class_labels.txt   <image_id> <class_id>
          train_test_split.txt     <image_id> <is_training_image>
          classes.txt              <class_id> <nnn>.<Class_Name>
          images/<nnn>.<Class_Name>/<file>.jpg

    Labels follow ``class_id`` order; class names drop the ``nnn.`` prefix and underscores
    (``001.Black_footed_Albatross`` -> ``Black footed Albatross``); ``meta["class_folders"]``
    keeps the folder names. No taxonomy.
    """
    root = Path(root)
    require_split(split, SPLIT_SIZES, "cub")
    what = (
        f"the CUB-200-2011 index files images.txt, image_class_labels.txt, "
        f"train_test_split.txt and classes.txt in {root}; pass the CUB_200_2011 folder "
        "of the official archive"
    )
    require(root, what)
    images = read_mapping(root / "images.txt", ("image_id", "path"), what)
    image_classes = read_mapping(root / "image_class_labels.txt", ("image_id", "class_id"), what)
    is_training = read_mapping(
        root / "train_test_split.txt", ("image_id", "is_training_image"), what
    )
    class_folders = read_mapping(root / "classes.txt", ("class_id", "class_name"), what)

    class_ids = sorted(class_folders, key=lambda c: _integer(c, root / "classes.txt"))
    label_of = {class_id: label for label, class_id in enumerate(class_ids)}
    wanted = "1" if split == "train" else "0"
    items = []
    for image_id, path in images.items():
        flag = _lookup(is_training, image_id, root / "train_test_split.txt")
        if flag not in ("0", "1"):
            raise DatasetError(
                f"{root / 'train_test_split.txt'}: image {image_id} has is_training_image "
                f"{flag!r}; expected 0 or 1"
            )
        if flag == wanted:
            class_id = _lookup(image_classes, image_id, root / "image_class_labels.txt")
            label = _lookup(label_of, class_id, root / "classes.txt", kind="class_id")
            items.append((root / "images" / path, label))
    folders = [class_folders[c] for c in class_ids]
    return ClassificationSplit.from_items(
        "cub",
        split,
        root,
        items,
        [_readable(folder) for folder in folders],
        listed_by=str(root / "images.txt"),
        meta={"official_size": SPLIT_SIZES[split], "class_folders": folders},
    )


def _lookup(mapping: dict, key: str, path: Path, kind: str = "image_id"):
    try:
        return mapping[key]
    except KeyError:
        raise DatasetError(f"{path} has no line for {kind} {key}") from None


def _integer(text: str, path: Path) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}: class id {text!r} is not an integer") from None


def _readable(folder: str) -> str:
    """``001.Black_footed_Albatross`` -> ``Black footed Albatross``."""
    return folder.split(".", 1)[-1].replace("_", " ")

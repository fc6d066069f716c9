"""Any classification dataset stored as one folder per split and one sub-folder per class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kdbench.data.base import ClassificationSplit, DatasetError, require, require_split
from kdbench.data.layout import IMAGE_SUFFIXES, list_folders, list_images


def load_imagefolder(
    root: str | Path, split: str, classes: Sequence[str] | None = None
) -> ClassificationSplit:
    """A split of an image-folder dataset (the torchvision ``ImageFolder`` convention).

    Layout::

        root/
          train/<class>/<image>.{jpg,jpeg,png,bmp,gif,tif,tiff,webp}   (sub-folders allowed)
          val/<class>/...
          test/<class>/...

    The splits are the sub-folders of ``root``. Classes are the class folders of *all* splits,
    sorted, so labels agree between splits even when one split lacks a class; pass
    ``classes`` to fix the list (and its order) yourself.
    """
    root = Path(root)
    require(root, "a folder with one sub-folder per split, each with one folder per class")
    splits = {folder.name: folder for folder in list_folders(root)}
    require_split(split, splits, f"the image folder {root}")
    if classes is None:
        classes = sorted({c.name for folder in splits.values() for c in list_folders(folder)})
    label_of = {name: label for label, name in enumerate(classes)}
    items = []
    for class_folder in list_folders(splits[split]):
        if class_folder.name not in label_of:
            raise DatasetError(
                f"{class_folder} is a class folder, but {class_folder.name!r} is not among the "
                f"classes passed: {', '.join(classes)}"
            )
        label = label_of[class_folder.name]
        items += [(image, label) for image in list_images(class_folder, recursive=True)]
    if not items:
        raise DatasetError(
            f"{splits[split]} holds no images in class folders; expected "
            f"{splits[split]}/<class>/<image> with suffix {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    return ClassificationSplit.from_items(
        "imagefolder", split, root, items, classes, listed_by=str(splits[split])
    )

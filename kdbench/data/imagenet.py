"""ImageNet-1k (ILSVRC 2012) validation set: 50,000 images of 1,000 classes."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import ClassificationSplit, DatasetError, require_split
from kdbench.data.layout import list_folders, list_images, read_csv, read_mapping

VAL_SIZE = 50_000
VAL_FOLDERS = ("val", "ILSVRC/Data/CLS-LOC/val")
SOLUTION_FILE = "LOC_val_solution.csv"
SYNSET_FILE = "LOC_synset_mapping.txt"


def load_imagenet_val(root: str | Path, split: str = "val") -> ClassificationSplit:
    """The ImageNet validation set in either of its two common layouts.

    Layout, class folders (as made by the usual ``valprep.sh``)::

        imagenet/
          val/<wnid>/ILSVRC2012_val_<nnnnnnnn>.JPEG
          LOC_synset_mapping.txt        optional: "<wnid> <name>, <name2>, ..."

    or flat, as on Kaggle's ImageNet Object Localization Challenge::

        imagenet-object-localization-challenge/
          ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_<nnnnnnnn>.JPEG   (or val/*.JPEG)
          LOC_val_solution.csv          "ImageId,PredictionString"; the first token is the wnid
          LOC_synset_mapping.txt        optional

    With ``LOC_synset_mapping.txt`` the classes are its 1,000 lines in order (the standard
    class indices) named by the first name on each line; without it, the wnids present, sorted.
    ``meta["wnids"]`` holds the wnid of every class (some first names repeat, e.g. ``crane``).
    """
    root = Path(root)
    require_split(split, ("val",), "imagenet-val")
    val_dir = next((root / f for f in VAL_FOLDERS if (root / f).is_dir()), None)
    if val_dir is None:
        raise DatasetError(
            f"no ImageNet validation folder in {root}: expected {root / 'val'} (class folders "
            f"val/<wnid>/*.JPEG, or flat val/*.JPEG with {SOLUTION_FILE}) or the Kaggle "
            f"layout {root / VAL_FOLDERS[1]}"
        )
    class_folders = list_folders(val_dir)
    if class_folders:
        pairs = [(image, folder.name) for folder in class_folders for image in list_images(folder)]
        listed_by = f"the class folders of {val_dir}"
    else:
        pairs = _flat_layout(root, val_dir)
        listed_by = str(root / SOLUTION_FILE)

    wnids, classes = _class_names(root, {wnid for _, wnid in pairs})
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    return ClassificationSplit.from_items(
        "imagenet-val",
        split,
        root,
        [(image, label_of[wnid]) for image, wnid in pairs],
        classes,
        listed_by=listed_by,
        meta={"official_size": VAL_SIZE, "wnids": wnids},
    )


def _flat_layout(root: Path, val_dir: Path) -> list[tuple[Path, str]]:
    """(image, wnid) pairs of a flat ``val/`` folder labelled by ``LOC_val_solution.csv``."""
    solution = root / SOLUTION_FILE
    what = (
        f"{SOLUTION_FILE} (header 'ImageId,PredictionString') in {root} to label the flat "
        f"folder {val_dir}, or one sub-folder per wnid in {val_dir}"
    )
    pairs = []
    for row in read_csv(solution, ("ImageId", "PredictionString"), what):
        tokens = row["PredictionString"].split()
        if not tokens:
            raise DatasetError(f"{solution}: image {row['ImageId']} has an empty PredictionString")
        pairs.append((val_dir / f"{row['ImageId']}.JPEG", tokens[0]))
    return pairs


def _class_names(root: Path, present: set[str]) -> tuple[list[str], list[str]]:
    """(wnids, names) in label order, from ``LOC_synset_mapping.txt`` when it exists."""
    mapping_file = root / SYNSET_FILE
    if not mapping_file.exists():
        wnids = sorted(present)
        return wnids, list(wnids)
    mapping = read_mapping(mapping_file, ("wnid", "names"), f"{SYNSET_FILE} in {root}")
    unknown = sorted(present - mapping.keys())
    if unknown:
        raise DatasetError(
            f"{mapping_file} does not list the wnid(s) {', '.join(unknown[:5])} found in the "
            "validation labels; use the mapping file that comes with the same release"
        )
    wnids = list(mapping)
    return wnids, [mapping[w].split(",")[0].strip() for w in wnids]

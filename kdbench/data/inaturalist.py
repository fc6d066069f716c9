"""iNaturalist 2021: 10,000 species with their full taxonomy, COCO-style annotation files."""

from __future__ import annotations

from pathlib import Path

from kdbench.data.base import ClassificationSplit, DatasetError, require_split
from kdbench.data.layout import read_json

SPLIT_SIZES = {"val": 100_000, "train_mini": 500_000, "train": 2_686_843}
TAXONOMY_LEVELS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


def load_inat2021(root: str | Path, split: str = "val") -> ClassificationSplit:
    """iNaturalist 2021 (Van Horn et al., CVPR 2021) by its annotation file ``<split>.json``.

    Layout (the official archives unpacked side by side)::

        inat2021/
          val.json          {"images": [{"id", "file_name", ...}],
                             "annotations": [{"image_id", "category_id", ...}],
                             "categories": [{"id", "name", "kingdom", "phylum", "class",
                                             "order", "family", "genus",
                                             "specific_epithet", ...}]}
          val/<nnnnn>_<Kingdom>_<Phylum>_..._<Genus>_<epithet>/<uuid>.jpg
          (train.json + train/, train_mini.json + train_mini/)

    Every category is a class, in category-id order, named by its scientific ``name``;
    ``taxonomy`` holds per class (kingdom, phylum, class, order, family, genus, species name)
    and ``taxonomy_levels`` the rank names; ``meta["common_names"]`` the common names.
    """
    root = Path(root)
    require_split(split, SPLIT_SIZES, "inat2021")
    index_file = root / f"{split}.json"
    what = (
        f"the iNaturalist 2021 annotation file {split}.json (keys images, annotations, "
        f"categories) in {root}, next to the unpacked {split}/ image folder"
    )
    data = read_json(index_file, ("images", "annotations", "categories"), what)
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        taxonomy = [
            (*(str(c[rank]) for rank in TAXONOMY_LEVELS[:-1]), str(c["name"])) for c in categories
        ]
        label_of = {c["id"]: label for label, c in enumerate(categories)}
        category_of = {a["image_id"]: a["category_id"] for a in data["annotations"]}
        file_of = {image["id"]: image["file_name"] for image in data["images"]}
    except (KeyError, TypeError) as exc:
        problem = f"{index_file}: an entry lacks the field {exc}; expected {what}"
        raise DatasetError(problem) from None
    items = []
    for image_id, file_name in file_of.items():
        if image_id not in category_of:
            raise DatasetError(f"{index_file}: image {image_id} ({file_name}) has no annotation")
        category = category_of[image_id]
        if category not in label_of:
            raise DatasetError(f"{index_file}: image {image_id} has unknown category_id {category}")
        items.append((root / file_name, label_of[category]))
    return ClassificationSplit.from_items(
        "inat2021",
        split,
        root,
        items,
        [c["name"] for c in categories],
        listed_by=str(index_file),
        taxonomy=taxonomy,
        taxonomy_levels=TAXONOMY_LEVELS,
        meta={
            "official_size": SPLIT_SIZES[split],
            "common_names": [c.get("common_name") for c in categories],
        },
    )

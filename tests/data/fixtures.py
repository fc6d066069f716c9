"""Tiny datasets written in the real on-disk layouts of the standard suite.

Each ``make_<dataset>(root, ...)`` writes a handful of small images and real-looking
annotation files under ``root`` and returns the folder to pass to the loader. Images are
filled with their class's colour plus a little noise (segmentation images: each pixel with the
colour of its class), so a protocol run on a fixture has something to learn.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from kdbench.data.cityscapes import CLASSES as CITYSCAPES_CLASSES
from kdbench.data.coco import CocoInstance, CocoInstances, semantic_mask

IMAGE_SIZE = (20, 16)
"""(width, height) of fixture images unless a builder says otherwise."""


def class_colour(label: int) -> tuple[int, int, int]:
    """A distinct RGB colour per class index."""
    rng = np.random.default_rng(1000 + label)
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def write_image(path: Path, label: int, seed: int, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    """An RGB image of ``size`` in the class colour with noise, JPEG or PNG by suffix."""
    width, height = size
    noise = np.random.default_rng(seed).integers(-20, 21, size=(height, width, 3))
    pixels = np.clip(np.asarray(class_colour(label)) + noise, 0, 255).astype(np.uint8)
    return _save(Image.fromarray(pixels, "RGB"), path)


def write_scene(path: Path, mask: np.ndarray, seed: int) -> Path:
    """An RGB image whose pixels have the colour of their class in ``mask`` (255: grey)."""
    colours = np.asarray([class_colour(c) for c in range(256)], dtype=np.int64)
    colours[255] = (128, 128, 128)
    noise = np.random.default_rng(seed).integers(-10, 11, size=(*mask.shape, 3))
    pixels = np.clip(colours[mask] + noise, 0, 255).astype(np.uint8)
    return _save(Image.fromarray(pixels, "RGB"), path)


def write_label_png(path: Path, mask: np.ndarray, palette: Sequence[int] | None = None) -> Path:
    """A class-index PNG: greyscale (mode L), or palette (mode P) when ``palette`` is given."""
    image = Image.fromarray(mask.astype(np.uint8), "L")
    if palette is not None:
        image = image.convert("P")
        image.putpalette(list(palette))
    return _save(image, path)


def _save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=90)
    else:
        image.save(path, format="PNG")
    return path


def _write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# classification


def make_imagefolder(
    root: Path,
    splits: dict[str, int] | None = None,
    classes: Sequence[str] = ("cat", "dog", "fox"),
) -> Path:
    """``root/<split>/<class>/<n>.<jpg|png>`` with ``splits[split]`` images per class."""
    splits = splits or {"train": 3, "val": 2}
    for s, (split, per_class) in enumerate(splits.items()):
        for label, name in enumerate(classes):
            for n in range(per_class):
                suffix = "png" if n % 2 else "jpg"
                write_image(root / split / name / f"{name}_{n:03d}.{suffix}", label, 100 * s + n)
    return root


def make_miniimagenet(
    root: Path,
    classes_per_split: tuple[int, int, int] = (5, 5, 5),
    images_per_class: int = 3,
    size: tuple[int, int] = (24, 20),
) -> Path:
    """``train.csv``/``val.csv``/``test.csv`` (``filename,label``) and ``images/<filename>``."""
    offset = 0
    for split, count in zip(("train", "val", "test"), classes_per_split, strict=True):
        rows = []
        for label in range(offset, offset + count):
            wnid = f"n{1_440_764 + 7_919 * label:08d}"
            for n in range(images_per_class):
                filename = f"{wnid}{n + 1:08d}.jpg"
                write_image(root / "images" / filename, label, 10 * label + n, size)
                rows.append((filename, wnid))
        offset += count
        with (root / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("filename", "label"))
            writer.writerows(rows)
    return root


CUB_CLASS_FOLDERS = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
CUB_TRAINING_PATTERN = (1, 0, 1, 1, 0)
"""``is_training_image`` of each class's images: 3 train and 2 test per class."""


def make_cub(
    root: Path,
    class_folders: Sequence[str] = CUB_CLASS_FOLDERS,
    training_pattern: Sequence[int] = CUB_TRAINING_PATTERN,
) -> Path:
    """``CUB_200_2011/`` with its four index files and ``images/<class>/<file>.jpg``."""
    root = root / "CUB_200_2011"
    images, labels, split, classes = [], [], [], []
    image_id = 0
    for class_id, folder in enumerate(class_folders, start=1):
        classes.append(f"{class_id} {folder}")
        species = folder.split(".", 1)[1].replace("Black_footed", "Black_Footed")
        for n, is_training in enumerate(training_pattern):
            image_id += 1
            path = f"{folder}/{species}_{17 + 31 * n:04d}_{795 + image_id}.jpg"
            write_image(root / "images" / path, class_id - 1, image_id)
            images.append(f"{image_id} {path}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {is_training}")
    _write_lines(root / "images.txt", images)
    _write_lines(root / "image_class_labels.txt", labels)
    _write_lines(root / "train_test_split.txt", split)
    _write_lines(root / "classes.txt", classes)
    _write_lines(
        root / "bounding_boxes.txt", [f"{i} 1.0 2.0 10.0 8.0" for i in range(1, image_id + 1)]
    )
    return root


AIRCRAFT_VARIANTS = (
    ("707-320", "Boeing 707", "Boeing"),
    ("A300B4", "A300", "Airbus"),
    ("Cessna 172", "Cessna 172", "Cessna"),
    ("F/A-18", "F/A-18", "McDonnell Douglas"),
    ("Falcon 2000", "Falcon 2000", "Dassault Aviation"),
)
AIRCRAFT_CLASS_FILES = {
    "variant": "variants.txt",
    "family": "families.txt",
    "manufacturer": "manufacturers.txt",
}
AIRCRAFT_SPLIT_IMAGES = {"train": 2, "val": 1, "test": 2}
"""Images per variant in each official split (trainval = train + val)."""


def make_aircraft(root: Path, split_images: dict[str, int] | None = None) -> Path:
    """``fgvc-aircraft-2013b/data/`` with images, the split files of all three label levels
    and the class lists (variants, families, manufacturers); ``split_images`` gives the
    images per variant in train, val and test (default :data:`AIRCRAFT_SPLIT_IMAGES`)."""
    split_images = split_images or AIRCRAFT_SPLIT_IMAGES
    data = root / "fgvc-aircraft-2013b" / "data"
    rng = np.random.default_rng(7)
    rows: dict[str, list[tuple[str, int]]] = {split: [] for split in split_images}
    next_id = 34_309
    for label in range(len(AIRCRAFT_VARIANTS)):
        for split, count in split_images.items():
            for _ in range(count):
                image_id = f"{next_id:07d}"
                next_id += int(rng.integers(1, 5000))
                write_image(data / "images" / f"{image_id}.jpg", label, next_id, (24, 18))
                rows[split].append((image_id, label))
    rows["trainval"] = rows["train"] + rows["val"]
    for level, column in (("variant", 0), ("family", 1), ("manufacturer", 2)):
        names = list(dict.fromkeys(v[column] for v in AIRCRAFT_VARIANTS))
        _write_lines(data / AIRCRAFT_CLASS_FILES[level], names)
        for split, split_rows in rows.items():
            order = rng.permutation(len(split_rows))
            lines = [
                f"{split_rows[i][0]} {AIRCRAFT_VARIANTS[split_rows[i][1]][column]}" for i in order
            ]
            _write_lines(data / f"images_{level}_{split}.txt", lines)
    return root / "fgvc-aircraft-2013b"


DTD_CATEGORIES = ("banded", "bubbly", "zigzagged")


def make_dtd(root: Path, categories: Sequence[str] = DTD_CATEGORIES, per_category: int = 6) -> Path:
    """``dtd/images/<category>/`` and ``dtd/labels/{train,val,test}{1..10}.txt``: each fold
    splits every category's images evenly into train, val and test."""
    root = root / "dtd"
    names = {}
    for label, category in enumerate(categories):
        names[category] = [f"{category}/{category}_{n + 1:04d}.jpg" for n in range(per_category)]
        for n, name in enumerate(names[category]):
            write_image(root / "images" / name, label, 50 * label + n)
    third = per_category // 3
    for fold in range(1, 11):
        rng = np.random.default_rng(fold)
        parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for category in categories:
            shuffled = [names[category][i] for i in rng.permutation(per_category)]
            for k, part in enumerate(parts):
                parts[part] += sorted(shuffled[k * third : (k + 1) * third])
        for part, lines in parts.items():
            _write_lines(root / "labels" / f"{part}{fold}.txt", lines)
    _write_lines(
        root / "labels" / "labels_joint_anno.txt",
        [f"{name} {name.split('/')[0]} " for category in categories for name in names[category]],
    )
    return root


IMAGENET_SYNSETS = (
    ("n01440764", "tench, Tinca tinca"),
    ("n01443537", "goldfish, Carassius auratus"),
    ("n01484850", "great white shark, white shark, man-eater, man-eating shark"),
    ("n01491361", "tiger shark, Galeocerdo cuvieri"),
    ("n01494475", "hammerhead, hammerhead shark"),
)
IMAGENET_VAL_WNIDS = ("n01491361", "n01440764", "n01491361", "n01484850", "n01440764", "n01484850")
"""The class of ILSVRC2012_val_00000001.JPEG, ..._00000002.JPEG, ... in the fixture."""


def make_imagenet_val(
    root: Path,
    layout: str = "folders",
    synset_mapping: bool = True,
    image_wnids: Sequence[str] = IMAGENET_VAL_WNIDS,
) -> Path:
    """ImageNet val in the ``folders`` layout (``val/<wnid>/*.JPEG``), the ``flat`` one
    (``val/*.JPEG`` + ``LOC_val_solution.csv``) or Kaggle's (``ILSVRC/Data/CLS-LOC/val``);
    ``image_wnids`` gives the class of each image in turn (wnids of :data:`IMAGENET_SYNSETS`)."""
    wnids = [w for w, _ in IMAGENET_SYNSETS]
    val = root / ("ILSVRC/Data/CLS-LOC/val" if layout == "kaggle" else "val")
    solution = []
    for n, wnid in enumerate(image_wnids, start=1):
        name = f"ILSVRC2012_val_{n:08d}.JPEG"
        folder = val / wnid if layout == "folders" else val
        write_image(folder / name, wnids.index(wnid), n, (22, 18))
        solution.append((name[: -len(".JPEG")], f"{wnid} 3 2 17 15 {wnid} 1 1 9 9 "))
    if layout != "folders":
        with (root / "LOC_val_solution.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("ImageId", "PredictionString"))
            writer.writerows(solution[::-1])
    if synset_mapping:
        _write_lines(
            root / "LOC_synset_mapping.txt", [f"{w} {names}" for w, names in IMAGENET_SYNSETS]
        )
    return root


INAT_SPECIES = (
    # kingdom phylum class order family genus epithet / common name
    "Animalia Chordata Aves Passeriformes Corvidae Corvus corax / Common Raven",
    "Animalia Chordata Aves Passeriformes Corvidae Corvus corone / Carrion Crow",
    "Animalia Chordata Aves Passeriformes Corvidae Pica pica / Eurasian Magpie",
    "Animalia Chordata Aves Passeriformes Paridae Parus major / Great Tit",
    "Animalia Chordata Aves Accipitriformes Accipitridae Aquila chrysaetos / Golden Eagle",
    "Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes / Red Fox",
    "Animalia Arthropoda Insecta Lepidoptera Nymphalidae Vanessa atalanta / Red Admiral",
    "Plantae Tracheophyta Magnoliopsida Rosales Rosaceae Rosa canina / Dog Rose",
)
"""The fixture's species; their category ids are their positions, listed shuffled in the file."""
INAT_LEVELS = ("kingdom", "phylum", "class", "order", "family", "genus")


def make_inat2021(root: Path, images_per_species: int = 2, split: str = "val") -> Path:
    """``<split>.json`` (images, annotations, categories with the full taxonomy) and
    ``<split>/<nnnnn>_<Kingdom>_..._<Genus>_<epithet>/<uuid>.jpg``."""
    rng = np.random.default_rng(2021)
    categories, images, annotations = [], [], []
    for category_id, species in enumerate(INAT_SPECIES):
        lineage, common = species.split(" / ")
        *ranks, epithet = lineage.split()
        folder = f"{category_id:05d}_" + "_".join([*ranks, epithet])
        categories.append(
            {
                "id": category_id,
                "name": f"{ranks[-1]} {epithet}",
                "common_name": common,
                "supercategory": ranks[0],
                **dict(zip(INAT_LEVELS, ranks, strict=True)),
                "specific_epithet": epithet,
                "image_dir_name": folder,
            }
        )
        for _ in range(images_per_species):
            image_id = len(images) + 1
            uuid = "-".join(rng.bytes(n).hex() for n in (4, 2, 2, 2, 6))
            file_name = f"{split}/{folder}/{uuid}.jpg"
            write_image(root / file_name, category_id, image_id)
            images.append(
                {
                    "id": image_id,
                    "width": IMAGE_SIZE[0],
                    "height": IMAGE_SIZE[1],
                    "file_name": file_name,
                    "license": 1,
                    "rights_holder": "somebody",
                    "date": "2019-06-08 10:14:00+00:00",
                    "latitude": 48.85,
                    "longitude": 2.35,
                    "location_uncertainty": 12,
                }
            )
            annotations.append({"id": image_id, "image_id": image_id, "category_id": category_id})
    order = rng.permutation(len(categories))
    data = {
        "info": {"year": 2021, "version": "2021", "description": "iNat2021 fixture"},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "http://creativecommons.org/"}],
        "images": images,
        "annotations": annotations,
        "categories": [categories[i] for i in order],
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.json").write_text(json.dumps(data))
    return root


# ---------------------------------------------------------------------------------------------
# segmentation

CITYSCAPES_IMAGES = {
    "train": ("aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"),
    "val": ("frankfurt_000000_000294", "frankfurt_000001_007973"),
}
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
"""The Cityscapes label id of each train id 0..18 (255 maps to label id 0, unlabeled)."""


def cityscapes_mask(index: int, size: tuple[int, int] = (32, 16)) -> np.ndarray:
    """The train-id mask of the fixture's ``index``-th image: eight stripes of consecutive
    classes (so three images cover all 19) above two rows of 255."""
    width, height = size
    columns = (np.arange(width) // 4 + 8 * index) % len(CITYSCAPES_CLASSES)
    mask = np.broadcast_to(columns, (height, width)).astype(np.uint8).copy()
    mask[-2:, :] = 255
    return mask


def make_cityscapes(
    root: Path, train_ids: bool = True, images: dict[str, Sequence[str]] | None = None
) -> Path:
    """``leftImg8bit/{train,val}/<city>/`` and ``gtFine/{train,val}/<city>/`` with
    ``labelIds``, ``color`` and (unless ``train_ids`` is False) ``labelTrainIds`` masks;
    ``images`` maps each split to its ``<city>_<seq>_<frame>`` stems."""
    root = root / "cityscapes"
    to_label_id = np.zeros(256, dtype=np.uint8)
    to_label_id[: len(CITYSCAPES_LABEL_IDS)] = CITYSCAPES_LABEL_IDS
    index = 0
    for split, stems in (images or CITYSCAPES_IMAGES).items():
        for stem in stems:
            city = stem.split("_")[0]
            mask = cityscapes_mask(index)
            write_scene(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", mask, index
            )
            gt = root / "gtFine" / split / city
            write_label_png(gt / f"{stem}_gtFine_labelIds.png", to_label_id[mask])
            write_scene(gt / f"{stem}_gtFine_color.png", mask, 0)
            if train_ids:
                write_label_png(gt / f"{stem}_gtFine_labelTrainIds.png", mask)
            index += 1
    return root


COCO_CATEGORIES = (
    {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
)
"""Listed out of id order on purpose: labels follow category ids (person 1, car 2, toothbrush 3)."""
COCO_SCENE_SIZE = (8, 10)
"""(height, width) of the hand-made val image 000000000139.jpg."""


def coco_rle_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths of a binary mask, zeros first (COCO's uncompressed RLE)."""
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], edges, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat.size and flat[0] else runs


def coco_rle_string(counts: Sequence[int]) -> str:
    """COCO's compressed RLE string of run lengths (the encoder of pycocotools'
    ``rleToString``, written here to build fixtures)."""
    out = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
    return "".join(out)


def _coco_annotation(ann_id: int, image_id: int, category_id: int, segmentation, iscrowd=0):
    return {
        "segmentation": segmentation,
        "area": 4.0,
        "iscrowd": iscrowd,
        "image_id": image_id,
        "bbox": [0.0, 0.0, 2.0, 2.0],
        "category_id": category_id,
        "id": ann_id,
    }


def coco_scene_annotations() -> list[dict]:
    """The instances of val image 139: overlapping polygons of two categories and of one
    category, a two-polygon instance, a compressed-RLE instance and an uncompressed-RLE crowd.
    Its semantic mask is written out by hand in the COCO tests."""
    height, width = COCO_SCENE_SIZE
    return [
        _coco_annotation(101, 139, 1, [[1, 1, 5, 1, 5, 5, 1, 5]]),  # person x1-4 y1-4
        _coco_annotation(102, 139, 3, [[4, 3, 8, 3, 8, 7, 4, 7]]),  # car x4-7 y3-6
        _coco_annotation(103, 139, 1, {"size": [height, width], "counts": [72, 4, 4]}, 1),
        _coco_annotation(104, 139, 90, {"size": [height, width], "counts": "62X2"}),
        _coco_annotation(105, 139, 3, [[0, 0, 1, 0, 1, 1, 0, 1], [2, 6, 3, 6, 3, 8, 2, 8]]),
        _coco_annotation(106, 139, 1, [[2, 0, 4, 0, 4, 2, 2, 2]]),  # person x2-3 y0-1
    ]


def _coco_image(image_id: int, height: int, width: int) -> dict:
    return {
        "license": 1,
        "file_name": f"{image_id:012d}.jpg",
        "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg",
        "height": height,
        "width": width,
        "date_captured": "2013-11-14 17:02:52",
        "flickr_url": "http://farm.staticflickr.com/1.jpg",
        "id": image_id,
    }


def make_coco(root: Path, train_images: int = 6) -> Path:
    """``coco/annotations/instances_{train,val}2017.json`` and ``{train,val}2017/*.jpg``.

    val: the hand-made scene 139 (:func:`coco_scene_annotations`) and image 285 without
    instances. train: ``train_images`` images, each with one rectangle per category
    (polygon, or compressed RLE for every third image) and a crowd strip (uncompressed RLE)."""
    root = root / "coco"
    label_of = {c["id"]: i for i, c in enumerate(sorted(COCO_CATEGORIES, key=lambda c: c["id"]), 1)}
    height, width = COCO_SCENE_SIZE
    splits = {
        "val": (
            [_coco_image(285, 12, 16), _coco_image(139, height, width)],
            coco_scene_annotations(),
        )
    }
    images, annotations = [], []
    for n in range(train_images):
        image_id = 9 + 17 * n
        h, w = 16, 24
        images.append(_coco_image(image_id, h, w))
        for k, category in enumerate(c["id"] for c in COCO_CATEGORIES):
            x0, y0 = 1 + 7 * k, 2 + n % 3
            box = np.zeros((h, w), dtype=bool)
            box[y0 : y0 + 9, x0 : x0 + 6] = True
            if n % 3 == 2:
                segmentation = {"size": [h, w], "counts": coco_rle_string(coco_rle_counts(box))}
            else:
                segmentation = [[x0, y0, x0 + 6, y0, x0 + 6, y0 + 9, x0, y0 + 9]]
            annotations.append(_coco_annotation(1000 * n + k, image_id, category, segmentation))
        crowd = np.zeros((h, w), dtype=bool)
        crowd[:, -2:] = True
        annotations.append(
            _coco_annotation(
                1000 * n + 9, image_id, 1, {"size": [h, w], "counts": coco_rle_counts(crowd)}, 1
            )
        )
    splits["train"] = (images, annotations)
    for split, (split_images, split_annotations) in splits.items():
        for seed, image in enumerate(split_images):
            # the loader's own mask drawing only colours the images; tests check masks by hand
            instances = tuple(
                CocoInstance(
                    a["id"], label_of[a["category_id"]], bool(a["iscrowd"]), a["segmentation"]
                )
                for a in split_annotations
                if a["image_id"] == image["id"]
            )
            mask = semantic_mask(CocoInstances("", image["height"], image["width"], instances))
            write_scene(root / f"{split}2017" / image["file_name"], mask, seed)
        data = {
            "info": {"description": "COCO 2017 fixture", "version": "1.0", "year": 2017},
            "licenses": [{"url": "http://creativecommons.org/", "id": 1, "name": "CC BY"}],
            "images": split_images,
            "annotations": split_annotations,
            "categories": list(COCO_CATEGORIES),
        }
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
    return root


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map: 256 RGB triples from the bits of each index."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


VOC_SPLITS = {
    "train": ("2007_000032", "2007_000039", "2008_000002"),
    "val": ("2007_000033", "2009_000012"),
}


VOC_OBJECT_LABELS = (15, 6, 12, 3, 20)
"""The object class of the fixture's masks in turn: person, bus, dog, bird, tvmonitor."""


def voc_mask(index: int, num_classes: int = 21, size: tuple[int, int] = (18, 14)) -> np.ndarray:
    """The fixture's ``index``-th mask: background, one object square, a 255 outline."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    label = VOC_OBJECT_LABELS[index % 5] if num_classes == 21 else 1 + index % (num_classes - 1)
    mask[3:10, 4:12] = label
    mask[2, 3:13] = mask[10, 3:13] = 255
    mask[2:11, 3] = mask[2:11, 12] = 255
    return mask


def make_voc(
    root: Path,
    classes: Sequence[str] | None = None,
    splits: dict[str, Sequence[str]] | None = None,
) -> Path:
    """``VOC2012/`` with ``JPEGImages``, palette-PNG ``SegmentationClass`` and
    ``ImageSets/Segmentation/{train,val,trainval}.txt``; ``classes`` writes a ``classes.txt``."""
    root = root / "VOC2012"
    num_classes = len(classes) if classes is not None else 21
    index = 0
    splits = splits or VOC_SPLITS
    for split, ids in splits.items():
        for image_id in ids:
            mask = voc_mask(index, num_classes)
            write_scene(root / "JPEGImages" / f"{image_id}.jpg", mask, index)
            write_label_png(root / "SegmentationClass" / f"{image_id}.png", mask, voc_palette())
            index += 1
        _write_lines(root / "ImageSets" / "Segmentation" / f"{split}.txt", ids)
    trainval = sorted([*splits.get("train", ()), *splits.get("val", ())])
    _write_lines(root / "ImageSets" / "Segmentation" / "trainval.txt", trainval)
    if classes is not None:
        _write_lines(root / "classes.txt", classes)
    return root

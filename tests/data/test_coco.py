import json
import shutil

import numpy as np
import pytest

from kdbench.data.base import IGNORE_INDEX, DatasetError, DatasetNotFoundError
from kdbench.data.coco import load_coco
from tests.data.fixtures import make_coco

X = IGNORE_INDEX
# Scene 139 drawn by hand: person (1) x1-4 y1-4 and x2-3 y0-1 (same class, overlapping
# instances -> 255), car (2) x4-7 y3-6 (overlaps the person at x4 y3-4 -> 255) and a
# two-polygon car at x0 y0 and x2 y6-7, toothbrush (3, compressed RLE) x0 y6-7, crowd
# (uncompressed RLE) x9 y0-3 -> 255.
SCENE_139 = np.array(
    [
        [2, 0, 1, 1, 0, 0, 0, 0, 0, X],
        [0, 1, X, X, 1, 0, 0, 0, 0, X],
        [0, 1, 1, 1, 1, 0, 0, 0, 0, X],
        [0, 1, 1, 1, X, 2, 2, 2, 0, X],
        [0, 1, 1, 1, X, 2, 2, 2, 0, 0],
        [0, 0, 0, 0, 2, 2, 2, 2, 0, 0],
        [3, 0, 2, 0, 2, 2, 2, 2, 0, 0],
        [3, 0, 2, 0, 0, 0, 0, 0, 0, 0],
    ]
)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco"))


def test_classes_follow_category_ids_after_background(coco_root):
    val = load_coco(coco_root, "val")
    assert val.classes == ["background", "person", "car", "toothbrush"]
    assert val.meta["category_ids"] == [1, 3, 90]
    assert [f.name for f in val.files] == ["000000000139.jpg", "000000000285.jpg"]
    assert [str(m) for m in val.masks] == [
        "annotations/instances_val2017.json#139",
        "annotations/instances_val2017.json#285",
    ]
    assert val.meta["image_classes"] == [(1, 2, 3), ()]


def test_scene_mask_pixel_exact(coco_root):
    image, mask = load_coco(coco_root, "val").load(0)
    assert image.shape == (8, 10, 3)
    np.testing.assert_array_equal(mask, SCENE_139)


def test_image_without_instances_is_background(coco_root):
    image, mask = load_coco(coco_root, "val").load(1)
    assert image.shape == (12, 16, 3) and mask.shape == (12, 16) and not mask.any()


def test_train_masks_from_polygons_and_compressed_rle_agree(coco_root):
    train = load_coco(coco_root, "train")
    assert len(train) == 6 and train.meta["official_size"] == 118_287
    masks = {f.name: train.load(i)[1] for i, f in enumerate(train.files)}
    polygon, rle = masks["000000000043.jpg"], masks["000000000094.jpg"]  # images n=2 and n=5
    for mask in (polygon, rle):
        assert sorted(np.unique(mask).tolist()) == [0, 1, 2, 3, X]
        assert (mask[:, -2:] == X).all()  # crowd strip
    np.testing.assert_array_equal(polygon, rle)
    assert (
        (rle[4:13, 1:7] == 3).all()
        and (rle[4:13, 8:14] == 1).all()
        and (rle[4:13, 15:21] == 2).all()
    )


def test_manifest_is_stable(coco_root, tmp_path):
    moved = shutil.copytree(coco_root, tmp_path / "moved")
    assert load_coco(coco_root, "val").manifest_sha256 == load_coco(moved, "val").manifest_sha256
    assert (
        load_coco(coco_root, "val").manifest_sha256 != load_coco(coco_root, "train").manifest_sha256
    )


def test_errors(coco_root, tmp_path):
    with pytest.raises(
        DatasetError, match=r"unknown split 'test' for coco; valid splits: train, val"
    ):
        load_coco(coco_root, "test")
    with pytest.raises(
        DatasetNotFoundError,
        match=r"instances_val2017.json does not exist; expected the COCO 2017 instance annotations",
    ):
        load_coco(tmp_path, "val")
    broken = shutil.copytree(coco_root, tmp_path / "broken")
    index = broken / "annotations" / "instances_val2017.json"
    data = json.loads(index.read_text())
    data["annotations"][3]["segmentation"]["size"] = [9, 10]
    index.write_text(json.dumps(data))
    with pytest.raises(
        DatasetError,
        match=r"instances_val2017.json#139, annotation 104: RLE size \[9, 10\] differs",
    ):
        load_coco(broken, "val").load(0)
    data["annotations"][0]["category_id"] = 2
    index.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"annotation 101 has unknown category_id 2"):
        load_coco(broken, "val")
    (broken / "val2017" / "000000000285.jpg").unlink()
    data["annotations"][0]["category_id"] = 1
    index.write_text(json.dumps(data))
    with pytest.raises(DatasetNotFoundError, match=r"000000000285.jpg"):
        load_coco(broken, "val")

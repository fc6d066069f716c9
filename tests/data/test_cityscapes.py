import shutil
from pathlib import Path

import numpy as np
import pytest

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.cityscapes import load_cityscapes
from tests.data.fixtures import make_cityscapes, write_label_png


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"))


def test_splits_classes_and_pairs(cityscapes_root):
    train, val = load_cityscapes(cityscapes_root, "train"), load_cityscapes(cityscapes_root, "val")
    assert (len(train), len(val)) == (3, 2)
    assert train.num_classes == 19
    assert train.classes[:3] == ["road", "sidewalk", "building"] and train.classes[-1] == "bicycle"
    assert train.classes[6:8] == ["traffic light", "traffic sign"]
    assert val.meta["official_size"] == 500
    for image, mask in zip(train.files, train.masks, strict=True):
        assert mask.name == image.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
        assert mask.parent.name == image.parent.name


def test_masks_are_train_ids_with_255_ignored(cityscapes_root):
    image, mask = load_cityscapes(cityscapes_root, "val").load(1)
    assert image.shape == (16, 32, 3) and mask.shape == (16, 32)
    # fixture image 4 (the 2nd val image): stripes of 4 columns from train id 4 * 8 % 19 = 13
    assert mask[0, ::4].tolist() == [13, 14, 15, 16, 17, 18, 0, 1]
    assert (mask[:-2] == np.repeat(mask[0:1], 14, axis=0)).all() and (mask[-2:] == 255).all()
    train = load_cityscapes(cityscapes_root, "train")
    present = set().union(*(np.unique(train.load(i)[1]).tolist() for i in range(len(train))))
    assert present == set(range(19)) | {255}


def test_manifest_does_not_depend_on_the_root(cityscapes_root, tmp_path):
    moved = shutil.copytree(cityscapes_root, tmp_path / "moved")
    assert (
        load_cityscapes(cityscapes_root, "val").manifest_sha256
        == load_cityscapes(moved, "val").manifest_sha256
    )
    assert (
        load_cityscapes(cityscapes_root, "val").manifest_sha256
        != load_cityscapes(cityscapes_root, "train").manifest_sha256
    )


def test_label_ids_only_says_how_to_make_train_ids(tmp_path):
    root = make_cityscapes(tmp_path, train_ids=False)
    with pytest.raises(DatasetError, match=r"createTrainIdLabelImgs") as error:
        load_cityscapes(root, "train")
    assert "aachen_000000_000019_gtFine_labelTrainIds.png does not exist" in str(error.value)
    assert "3 mask(s) have only label ids" in str(error.value)


def test_errors(cityscapes_root, tmp_path):
    with pytest.raises(DatasetError, match=r"valid splits: train, val"):
        load_cityscapes(cityscapes_root, "test")
    with pytest.raises(
        DatasetNotFoundError,
        match=r"leftImg8bit/train does not exist; expected the Cityscapes images",
    ):
        load_cityscapes(tmp_path, "train")
    broken = shutil.copytree(cityscapes_root, tmp_path / "broken")
    train_ids = broken / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png"
    train_ids.unlink()
    Path(str(train_ids).replace("labelTrainIds", "labelIds")).unlink()
    with pytest.raises(DatasetNotFoundError, match=r"1 image.* have no fine label"):
        load_cityscapes(broken, "val")
    bad = np.zeros((16, 32), np.uint8)
    bad[0, 0] = 19
    write_label_png(next(broken.glob("gtFine/train/bochum/*_labelTrainIds.png")), bad)
    with pytest.raises(
        DatasetError,
        match=r"bochum_000000_000313_gtFine_labelTrainIds.png: mask values \[19\] are outside",
    ):
        load_cityscapes(broken, "train").load(2)

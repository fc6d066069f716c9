import numpy as np
import pytest
from PIL import Image

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.voc import VOC_CLASSES, load_voc
from tests.data.fixtures import make_voc, write_label_png


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc"))


def test_splits_and_default_classes(voc_root):
    train, val = load_voc(voc_root, "train"), load_voc(voc_root, "val")
    assert (len(train), len(val), len(load_voc(voc_root, "trainval"))) == (3, 2, 5)
    assert train.classes == list(VOC_CLASSES) and train.classes[15] == "person"
    assert [f.stem for f in val.files] == ["2007_000033", "2009_000012"]
    assert train.meta == {"classes_file": False, "official_size": 1464}


def test_palette_mask_indices_pixel_exact(voc_root):
    mask_file = voc_root / "SegmentationClass" / "2007_000032.png"
    with Image.open(mask_file) as png:
        assert png.mode == "P"
        assert png.getpalette()[15 * 3 : 15 * 3 + 3] == [192, 128, 128]  # person in VOC colours
    image, mask = load_voc(voc_root, "train").load(0)  # 2007_000032: a person (15)
    assert image.shape == (14, 18, 3)
    expected = np.zeros((14, 18), dtype=np.int64)
    expected[2:11, 3:13] = 255
    expected[3:10, 4:12] = 15
    np.testing.assert_array_equal(mask, expected)


def test_classes_file_overrides_the_names(tmp_path):
    root = make_voc(tmp_path, classes=["background", "plant"])
    split = load_voc(root, "val")
    assert split.classes == ["background", "plant"] and split.meta == {"classes_file": True}
    assert set(np.unique(split.load(0)[1]).tolist()) == {0, 1, 255}


def test_errors(voc_root, tmp_path):
    with pytest.raises(DatasetError, match=r"valid splits: train, trainval, val"):
        load_voc(voc_root, "test")
    with pytest.raises(
        DatasetNotFoundError,
        match=r"SegmentationClassAug does not exist; expected a VOC-style folder",
    ):
        load_voc(voc_root, "train", mask_dir="SegmentationClassAug")
    root = make_voc(tmp_path, classes=["background", "plant"])
    write_label_png(root / "SegmentationClass" / "2007_000032.png", np.full((14, 18), 3, np.uint8))
    with pytest.raises(
        DatasetError, match=r"2007_000032.png: mask values \[3\] are outside \[0, 2\)"
    ):
        load_voc(root, "train").load(0)

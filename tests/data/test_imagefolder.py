import pytest

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.imagefolder import load_imagefolder
from tests.data.fixtures import make_imagefolder, write_image


def test_splits_and_classes(tmp_path):
    root = make_imagefolder(tmp_path / "ds", {"train": 3, "val": 2})
    train, val = load_imagefolder(root, "train"), load_imagefolder(root, "val")
    assert train.classes == val.classes == ["cat", "dog", "fox"]
    assert len(train) == 9 and len(val) == 6
    assert val.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert {f.suffix for f in train.files} == {".jpg", ".png"}
    images, _ = train.load_all(12)
    assert tuple(images.shape) == (9, 3, 12, 12)


def test_labels_agree_between_splits_when_one_lacks_a_class(tmp_path):
    root = make_imagefolder(tmp_path / "ds", {"train": 1, "val": 1})
    for image in (root / "val" / "cat").iterdir():
        image.unlink()
    (root / "val" / "cat").rmdir()
    write_image(root / "val" / "fox" / "deeper" / "x.jpg", 2, 0)
    val = load_imagefolder(root, "val")
    assert val.classes == ["cat", "dog", "fox"] and val.labels.tolist() == [1, 2, 2]
    assert load_imagefolder(root, "val", classes=["fox", "dog"]).labels.tolist() == [1, 0, 0]


def test_errors(tmp_path):
    root = make_imagefolder(tmp_path / "ds", {"train": 1})
    with pytest.raises(
        DatasetError, match=r"unknown split 'test' for the image folder .*; valid splits: train"
    ):
        load_imagefolder(root, "test")
    with pytest.raises(DatasetError, match=r"'dog' is not among the classes passed: cat"):
        load_imagefolder(root, "train", classes=["cat"])
    (root / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"holds no images in class folders"):
        load_imagefolder(root, "empty")
    with pytest.raises(DatasetNotFoundError):
        load_imagefolder(tmp_path / "missing", "train")

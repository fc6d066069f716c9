import shutil

import pytest

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.cub import load_cub
from tests.data.fixtures import make_cub


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    return make_cub(tmp_path_factory.mktemp("cub"))


def test_official_split_counts_labels_and_names(cub_root):
    train, test = load_cub(cub_root, "train"), load_cub(cub_root, "test")
    assert (len(train), len(test)) == (9, 6)
    assert train.classes == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert train.meta["class_folders"][0] == "001.Black_footed_Albatross"
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.taxonomy is None
    assert train.meta["official_size"] == 5994
    # is_training_image pattern 1 0 1 1 0 per class: images 1, 3, 4 of class 1 are train
    names = [f.name for f in train.files[:3]]
    assert names == [
        "Black_Footed_Albatross_0017_796.jpg",
        "Black_Footed_Albatross_0079_798.jpg",
        "Black_Footed_Albatross_0110_799.jpg",
    ]
    assert not set(train.files) & set(test.files)


def test_load_all_resizes_and_centre_crops(cub_root):
    images, labels = load_cub(cub_root, "test").load_all(8, resize=10)
    assert tuple(images.shape) == (6, 3, 8, 8)
    assert str(images.dtype) == "torch.uint8" and labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_manifest_is_stable_and_relative(cub_root, tmp_path):
    moved = shutil.copytree(cub_root, tmp_path / "elsewhere")
    first = load_cub(cub_root, "train").manifest_sha256
    assert (
        first
        == load_cub(cub_root, "train").manifest_sha256
        == load_cub(moved, "train").manifest_sha256
    )
    assert first != load_cub(cub_root, "test").manifest_sha256


def test_errors_name_the_file_and_the_fix(cub_root, tmp_path):
    with pytest.raises(
        DatasetError, match=r"unknown split 'val' for cub; valid splits: train, test"
    ):
        load_cub(cub_root, "val")
    with pytest.raises(DatasetNotFoundError, match=r"images.txt does not exist; expected the CUB"):
        load_cub(cub_root.parent, "train")
    broken = shutil.copytree(cub_root, tmp_path / "broken")
    (broken / "train_test_split.txt").write_text("1 1\n")
    with pytest.raises(DatasetError, match=r"train_test_split.txt has no line for image_id 2"):
        load_cub(broken, "train")
    (broken / "train_test_split.txt").write_text((cub_root / "train_test_split.txt").read_text())
    (broken / "images" / "002.Laysan_Albatross").rename(broken / "images" / "gone")
    with pytest.raises(
        DatasetNotFoundError, match=r"3 file\(s\) listed by .*images.txt do not exist"
    ):
        load_cub(broken, "train")

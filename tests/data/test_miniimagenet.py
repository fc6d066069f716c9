import pytest

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.miniimagenet import load_miniimagenet
from tests.data.fixtures import make_miniimagenet


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    return make_miniimagenet(tmp_path_factory.mktemp("mini"), classes_per_split=(4, 2, 3))


def test_disjoint_class_splits(mini_root):
    splits = {s: load_miniimagenet(mini_root, s) for s in ("train", "val", "test")}
    assert {s: len(d.classes) for s, d in splits.items()} == {"train": 4, "val": 2, "test": 3}
    assert {s: len(d) for s, d in splits.items()} == {"train": 12, "val": 6, "test": 9}
    assert splits["train"].classes[0] == "n01440764"
    assert not set(splits["train"].classes) & set(splits["test"].classes)
    assert splits["test"].labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert splits["train"].meta == {"official_size": 38400, "official_classes": 64}
    wnid = splits["val"].classes[1]
    assert all(
        f.name.startswith(wnid)
        for f, y in zip(splits["val"].files, splits["val"].labels, strict=True)
        if y == 1
    )


def test_protocol_resolution_92_then_84(mini_root):
    images, labels = load_miniimagenet(mini_root, "val").load_all(84, resize=92)
    assert tuple(images.shape) == (6, 3, 84, 84) and labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_errors(mini_root, tmp_path):
    with pytest.raises(
        DatasetNotFoundError,
        match=r"train.csv does not exist; expected the Ravi–Larochelle split files train.csv, "
        r"val.csv, test.csv",
    ):
        load_miniimagenet(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"valid splits: train, val, test"):
        load_miniimagenet(mini_root, "novel")
    (tmp_path / "train.csv").write_text("filename,label\nn0000000100000001.jpg,n00000001\n")
    with pytest.raises(DatasetNotFoundError, match=r"images/n0000000100000001.jpg"):
        load_miniimagenet(tmp_path, "train")

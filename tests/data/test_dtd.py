import pytest

from kdbench.data.base import DatasetError
from kdbench.data.dtd import load_dtd
from tests.data.fixtures import make_dtd


@pytest.fixture(scope="module")
def dtd_root(tmp_path_factory):
    return make_dtd(tmp_path_factory.mktemp("dtd"))


def test_split_one_by_default(dtd_root):
    train = load_dtd(dtd_root, "train")
    assert train.classes == ["banded", "bubbly", "zigzagged"]
    assert len(train) == 6 and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    listed = (dtd_root / "labels" / "train1.txt").read_text().split()
    assert sorted(f.relative_to(dtd_root / "images").as_posix() for f in train.files) == sorted(
        listed
    )
    assert train.meta == {"official_size": 1880, "fold": 1}


def test_folds_differ_and_trainval_joins_train_and_val(dtd_root):
    parts = {
        s: set(load_dtd(dtd_root, s, fold=3).files) for s in ("train", "val", "test", "trainval")
    }
    assert parts["trainval"] == parts["train"] | parts["val"]
    assert not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
    assert (
        load_dtd(dtd_root, "test", 3).manifest_sha256
        != load_dtd(dtd_root, "test", 4).manifest_sha256
    )


def test_errors(dtd_root, tmp_path):
    with pytest.raises(DatasetError, match=r"fold 11 does not exist; folds are 1 to 10"):
        load_dtd(dtd_root, "train", fold=11)
    with pytest.raises(DatasetError, match=r"valid splits: train, val, test, trainval"):
        load_dtd(dtd_root, "training")
    root = tmp_path / "dtd"
    (root / "images" / "banded").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "labels" / "test1.txt").write_text("woven/woven_0001.jpg\n")
    with pytest.raises(DatasetError, match=r"names category 'woven', which has no folder"):
        load_dtd(root, "test")

import pytest

from kdbench.data.aircraft import load_aircraft
from kdbench.data.base import DatasetError, DatasetNotFoundError
from tests.data.fixtures import make_aircraft


@pytest.fixture(scope="module")
def aircraft_root(tmp_path_factory):
    return make_aircraft(tmp_path_factory.mktemp("aircraft"))


def test_variant_splits(aircraft_root):
    sizes = {s: len(load_aircraft(aircraft_root, s)) for s in ("train", "val", "trainval", "test")}
    assert sizes == {"train": 10, "val": 5, "trainval": 15, "test": 10}
    trainval = load_aircraft(aircraft_root, "trainval")
    assert trainval.classes == ["707-320", "A300B4", "Cessna 172", "F/A-18", "Falcon 2000"]
    assert sorted(trainval.labels.tolist()) == [k for k in range(5) for _ in range(3)]
    assert trainval.meta == {"official_size": 6667, "level": "variant"}
    assert all(f.parent.name == "images" and f.suffix == ".jpg" for f in trainval.files)
    train, val = load_aircraft(aircraft_root, "train"), load_aircraft(aircraft_root, "val")
    assert set(trainval.files) == set(train.files) | set(val.files)


def test_labels_follow_the_variant_of_each_image(aircraft_root):
    index = aircraft_root / "data" / "images_variant_test.txt"
    variant_of = dict(line.split(" ", 1) for line in index.read_text().splitlines())
    test = load_aircraft(aircraft_root, "test")
    for file, label in zip(test.files, test.labels, strict=True):
        assert test.classes[label] == variant_of[file.stem]


def test_other_levels(aircraft_root):
    manufacturers = load_aircraft(aircraft_root, "test", level="manufacturer")
    assert manufacturers.classes[-1] == "Dassault Aviation" and len(manufacturers) == 10
    with pytest.raises(DatasetError, match=r"unknown FGVC-Aircraft level 'model'"):
        load_aircraft(aircraft_root, "test", level="model")


def test_errors(aircraft_root, tmp_path):
    with pytest.raises(DatasetError, match=r"valid splits: train, val, trainval, test"):
        load_aircraft(aircraft_root, "all")
    with pytest.raises(DatasetNotFoundError, match=r"data does not exist; expected the FGVC"):
        load_aircraft(aircraft_root / "data", "test")
    data = tmp_path / "fgvc" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("707-320\n")
    (data / "images_variant_test.txt").write_text("0034309 A380\n")
    with pytest.raises(
        DatasetError, match=r"variant 'A380' of image 0034309 is not in .*variants.txt"
    ):
        load_aircraft(tmp_path / "fgvc", "test")

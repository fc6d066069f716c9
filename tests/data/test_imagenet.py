import pytest

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.imagenet import load_imagenet_val
from tests.data.fixtures import make_imagenet_val

# the fixture's images 1..6: tiger shark, tench, tiger shark, white shark, tench, white shark
EXPECTED_LABELS = [3, 0, 3, 2, 0, 2]


@pytest.mark.parametrize("layout", ["folders", "flat", "kaggle"])
def test_every_layout_gives_the_same_labels(tmp_path, layout):
    split = load_imagenet_val(make_imagenet_val(tmp_path, layout), "val")
    assert split.classes == ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]
    assert split.meta["wnids"][:2] == ["n01440764", "n01443537"]
    by_image = sorted(zip((f.name for f in split.files), split.labels.tolist(), strict=True))
    assert [label for _, label in by_image] == EXPECTED_LABELS
    assert split.meta["official_size"] == 50_000


def test_without_synset_mapping_the_classes_are_the_sorted_wnids(tmp_path):
    split = load_imagenet_val(make_imagenet_val(tmp_path, "flat", synset_mapping=False))
    assert split.classes == ["n01440764", "n01484850", "n01491361"]
    by_image = sorted(zip((f.name for f in split.files), split.labels.tolist(), strict=True))
    assert [label for _, label in by_image] == [2, 0, 2, 1, 0, 1]


def test_folder_layout_manifest_is_stable(tmp_path):
    first = load_imagenet_val(make_imagenet_val(tmp_path / "a", "folders"))
    second = load_imagenet_val(make_imagenet_val(tmp_path / "b", "folders"))
    assert first.manifest_sha256 == second.manifest_sha256
    assert first.files[0].relative_to(first.root).as_posix().startswith("val/n01440764/")


def test_errors(tmp_path):
    with pytest.raises(
        DatasetError, match=r"unknown split 'train' for imagenet-val; valid splits: val"
    ):
        load_imagenet_val(tmp_path, "train")
    with pytest.raises(
        DatasetError, match=r"no ImageNet validation folder in .*ILSVRC/Data/CLS-LOC/val"
    ):
        load_imagenet_val(tmp_path)
    (tmp_path / "val").mkdir()
    with pytest.raises(
        DatasetNotFoundError,
        match=r"LOC_val_solution.csv does not exist; expected .* or one sub-folder per wnid",
    ):
        load_imagenet_val(tmp_path)
    root = make_imagenet_val(tmp_path / "partial", "folders")
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench, Tinca tinca\n")
    with pytest.raises(DatasetError, match=r"does not list the wnid.*n01484850, n01491361"):
        load_imagenet_val(root)

import json

import pytest

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.inaturalist import TAXONOMY_LEVELS, load_inat2021
from kdbench.data.taxonomy import TaxonomyIndex
from tests.data.fixtures import make_inat2021


@pytest.fixture(scope="module")
def inat_root(tmp_path_factory):
    return make_inat2021(tmp_path_factory.mktemp("inat"))


def test_classes_in_category_id_order_with_their_taxonomy(inat_root):
    split = load_inat2021(inat_root, "val")
    assert len(split) == 16 and split.classes[:3] == ["Corvus corax", "Corvus corone", "Pica pica"]
    assert split.taxonomy_levels == (
        "kingdom",
        "phylum",
        "class",
        "order",
        "family",
        "genus",
        "species",
    )
    assert split.taxonomy[0] == (
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Corvidae",
        "Corvus",
        "Corvus corax",
    )
    assert split.taxonomy[7] == (
        "Plantae",
        "Tracheophyta",
        "Magnoliopsida",
        "Rosales",
        "Rosaceae",
        "Rosa",
        "Rosa canina",
    )
    assert split.meta["common_names"][5] == "Red Fox"
    for file, label in zip(split.files, split.labels, strict=True):
        assert file.parent.name.endswith("_" + split.classes[label].replace(" ", "_"))


def test_taxonomy_distances_of_the_fixture(inat_root):
    split = load_inat2021(inat_root)
    index = TaxonomyIndex(split.taxonomy, split.taxonomy_levels)
    raven = 0
    expected = {
        "genus": [1],
        "family": [2],
        "order": [3],
        "class": [4],
        "phylum": [5],
        "kingdom": [6],
    }
    for rank, classes in expected.items():
        assert index.diverging_at(raven, rank).tolist() == classes
        assert index.common_rank(raven, classes[0]) == rank
    assert index.common_rank(raven, 7) is None


def test_errors(inat_root, tmp_path):
    with pytest.raises(DatasetError, match=r"valid splits: val, train_mini, train"):
        load_inat2021(inat_root, "test")
    with pytest.raises(
        DatasetNotFoundError,
        match=r"val.json does not exist; expected the iNaturalist 2021 annotation file",
    ):
        load_inat2021(tmp_path, "val")
    data = json.loads((inat_root / "val.json").read_text())
    del data["categories"][0]["genus"]
    (tmp_path / "val.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"an entry lacks the field 'genus'"):
        load_inat2021(tmp_path, "val")
    data = json.loads((inat_root / "val.json").read_text())
    data["annotations"].pop()
    (tmp_path / "val.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"image 16 .* has no annotation"):
        load_inat2021(tmp_path, "val")


def test_levels_constant_matches_the_tuple_length(inat_root):
    split = load_inat2021(inat_root)
    assert all(len(lineage) == len(TAXONOMY_LEVELS) for lineage in split.taxonomy)

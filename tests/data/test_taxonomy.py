import pytest

from kdbench.data.base import DatasetError
from kdbench.data.taxonomy import TaxonomyIndex

LEVELS = ("kingdom", "family", "genus", "species")
LINEAGES = [
    ("A", "F1", "G1", "s1"),  # 0
    ("A", "F1", "G1", "s2"),  # 1
    ("A", "F1", "G2", "s3"),  # 2
    ("A", "F2", "G3", "s4"),  # 3
    ("B", "F3", "G1", "s5"),  # 4: genus name G1 again, in another kingdom (a homonym)
    ("B", "F3", "G4", "s6"),  # 5
]


def test_common_rank():
    index = TaxonomyIndex(LINEAGES, LEVELS)
    assert index.common_rank(0, 1) == "genus"
    assert index.common_rank(0, 2) == "family"
    assert index.common_rank(0, 3) == "kingdom"
    assert index.common_rank(0, 4) is None
    assert index.common_rank(0, 0) == "species"


def test_diverging_at_is_exact_and_keeps_homonyms_apart():
    index = TaxonomyIndex(LINEAGES, LEVELS)
    assert index.diverging_at(0, "genus").tolist() == [1]
    assert index.diverging_at(0, "family").tolist() == [2]
    assert index.diverging_at(0, "kingdom").tolist() == [3]
    assert index.diverging_at(4, "genus").tolist() == []  # G1 of kingdom B has one species
    assert index.diverging_at(4, "family").tolist() == [5]
    assert index.diverging_at(0, "species").tolist() == []


def test_bad_input():
    with pytest.raises(DatasetError, match=r"class 1 has a lineage of 2 ranks"):
        TaxonomyIndex([("A", "F", "G", "s"), ("A", "F")], LEVELS)
    with pytest.raises(DatasetError, match=r"unknown rank 'order'"):
        TaxonomyIndex(LINEAGES, LEVELS).diverging_at(0, "order")

import inspect

import pytest

from kdbench.data import DATASETS, register_datasets
from kdbench.data.base import ClassificationSplit, SegmentationSplit
from kdbench.data.source import DataSource
from kdbench.registry import Provider, Register, Registry

NAMES = [
    "shapes",
    "imagefolder",
    "miniimagenet",
    "cub",
    "aircraft",
    "dtd",
    "imagenet-val",
    "inat2021",
    "cityscapes",
    "coco",
    "voc",
]


def _registry():
    register = Register("datasets", Provider("kdbench", "kdbench", "0"))
    register_datasets(register)
    registry = Registry()
    for component in register.collected:
        registry.add(component)
    return registry


def test_every_loader_is_registered_by_import_path():
    registry = _registry()
    assert registry.names("datasets") == sorted(NAMES)
    for name in NAMES:
        component = registry.get("datasets", name)
        assert isinstance(component.target, str) and component.description


def test_the_shapes_world_is_a_registered_data_source():
    source = _registry().get("datasets", "shapes").load()
    assert isinstance(source, DataSource) and source.name == "shapes"


@pytest.mark.parametrize("name, target, description", [d for d in DATASETS if d[0] != "shapes"])
def test_loaders_import_take_root_and_split_and_document_their_layout(name, target, description):
    loader = _registry().get("datasets", name).load()
    assert loader.__name__ == target.rsplit(":", 1)[1]
    assert list(inspect.signature(loader).parameters)[:2] == ["root", "split"]
    assert "Layout" in loader.__doc__
    returns = inspect.signature(loader).return_annotation
    assert returns in (
        "ClassificationSplit",
        "SegmentationSplit",
        ClassificationSplit,
        SegmentationSplit,
    )

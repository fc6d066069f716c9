"""Protocols read their data through the registered dataset a config section names: the
Shapes world is one (``shapes``), a dataset of files is its loader, and a plugin may register
either; no protocol or data module asks which suite it runs in."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench import plugins
from kdbench.data.files import FileSource
from kdbench.data.novel import NovelData, load_novel
from kdbench.data.source import DEFAULT_DATASET, DataSource, dataset_name, open_source
from kdbench.errors import ConfigError, UnknownComponentError
from kdbench.hookspecs import hookimpl
from kdbench.results import DatasetIdentity
from kdbench.world.source import SHAPES

PACKAGE = Path(__file__).resolve().parents[2] / "kdbench"


class TinyWorld(DataSource):
    """A generated world with novel classes only (three classes of two blank images)."""

    name = "tiny-world"

    def novel(self, config, progress):
        labels = np.repeat(np.arange(3), 2)
        images = torch.zeros(len(labels), 3, 8, 8, dtype=torch.uint8)
        return NovelData(
            lambda: (images, torch.from_numpy(labels)),
            labels,
            ["a", "b", "c"],
            "tiny",
            DatasetIdentity(name="tiny-world", version="1", sizes={"novel": 6}),
        )


class WorldPlugin:
    @hookimpl
    def kdbench_register_datasets(self, register):
        register(TinyWorld(), name="tiny-world", description="A tiny generated world.")


def test_a_section_without_a_dataset_reads_the_shapes_world():
    registry = plugins.get_registry()
    assert dataset_name({"per_class": 4}) == DEFAULT_DATASET == "shapes"
    assert open_source(registry, {"per_class": 4}, "fewshot.novel") is SHAPES


def test_a_dataset_of_files_is_read_through_its_registered_loader():
    registry = plugins.get_registry()
    source = open_source(registry, {"dataset": "cub"}, "fewshot.novel")
    assert isinstance(source, FileSource)
    assert source.loader is registry.get("datasets", "cub").load()


def test_an_unknown_dataset_is_named_with_a_suggestion():
    with pytest.raises(UnknownComponentError, match=r"cubb.*cub"):
        open_source(plugins.get_registry(), {"dataset": "cubb"}, "fewshot.novel")


def test_a_generated_world_registered_by_a_plugin_serves_its_roles():
    with plugins.temporary_plugin(WorldPlugin(), distribution="world-tests") as registry:
        config = {"novel": {"dataset": "tiny-world"}, "base": {}}
        novel = load_novel(config, registry, None, key="fewshot.novel")
        assert novel.class_names == ["a", "b", "c"] and novel.identity.name == "tiny-world"
        # a role the world does not have is a clear error naming the dataset
        with pytest.raises(ConfigError, match="dataset 'tiny-world' has no segmentation scenes"):
            open_source(registry, {"dataset": "tiny-world"}, "x").scenes({}, None)


def test_a_missing_root_names_the_key_to_set():
    registry = plugins.get_registry()
    base = {"dataset": "miniimagenet", "root": None, "split": "train"}
    source = open_source(registry, base, "segmentation.base")
    with pytest.raises(ConfigError, match=r"--set segmentation\.base\.root=PATH"):
        source.base_classes({**base, "image_size": 84, "resize": 96}, None)
    novel = {"dataset": "cub", "root": None, "split": "test", "image_size": 84, "resize": 96}
    with pytest.raises(ConfigError, match=r"fewshot\.base\.root=PATH .*fewshot\.novel\.root"):
        open_source(registry, novel, "fewshot.novel").novel({"novel": novel, "base": base}, None)


def test_no_protocol_or_data_module_branches_on_the_suite():
    """Only a protocol's default config may depend on the suite (that is what a suite is)."""
    offenders = []
    for path in [*(PACKAGE / "data").glob("*.py"), *(PACKAGE / "protocols").glob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"context\.suite|suite\s*==\s*[\"']", line) and "def default" not in line:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    allowed = {"base_training.py", "distill.py", "fewshot.py", "oneclass.py", "segmentation.py"}
    # the remaining matches are inside ``default_config`` functions: check that they are
    for entry in offenders:
        name, number = entry.split(":")[:2]
        assert name in allowed, entry
        source = (PACKAGE / "protocols" / name).read_text().splitlines()
        above = [s for s in source[: int(number)] if re.match(r"\s*def ", s)]
        assert above and "default" in above[-1], entry

"""Where a protocol's data comes from: the registered dataset a config section names.

Every protocol asks for its data by *role*: the labelled base classes a student stage trains
on, the novel classes few-shot episodes are drawn from, a downstream task, a pool of labelled
images for one-class tasks, or scenes for segmentation. A :class:`DataSource` answers each
role with the same types (:class:`~kdbench.data.base_classes.BaseData`,
:class:`~kdbench.data.novel.NovelData`, ...), whatever the data is:

- a dataset of files, registered as a loader ``(root, split) -> split``
  (:class:`~kdbench.data.base.ClassificationSplit` or
  :class:`~kdbench.data.base.SegmentationSplit`), is wrapped in a :class:`FileSource`;
- a generated world registers a :class:`DataSource` itself: the Shapes world is the
  ``shapes`` dataset (:data:`kdbench.world.source.SHAPES`).

A section names its dataset with ``dataset``; one that names none reads the Shapes world
(the embedded suite's configs, whose hashes predate the key). Protocols never ask which
suite they run in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.errors import ConfigError

if TYPE_CHECKING:
    from kdbench.data.base_classes import BaseData
    from kdbench.data.downstream import TaskData
    from kdbench.data.novel import NovelData
    from kdbench.data.pool import Pool
    from kdbench.data.scenes import SceneData
    from kdbench.registry import Registry
    from kdbench.transfer import TransferRequest
    from kdbench.transfer.pool import GenericPool

DEFAULT_DATASET = "shapes"
"""The dataset of a config section that names none."""

Progress = Callable[..., Any]


class DataSource:
    """A registered dataset as the protocols' roles see it. Each method takes the config
    section of its role (``fewshot``'s whole config for :meth:`novel` and ``segmentation``'s
    for :meth:`scenes`, which read keys beside their section); a role the data cannot play
    raises :class:`ConfigError` naming the dataset."""

    name: str = "dataset"

    def _cannot(self, role: str) -> ConfigError:
        return ConfigError(f"dataset {self.name!r} has no {role}")

    def base_classes(self, section: dict[str, Any], progress: Progress | None) -> BaseData:
        """Labelled base-class images a student stage trains on (the same for every seed)."""
        raise self._cannot("labelled base classes")

    def text_stage(
        self, section: dict[str, Any], progress: Progress | None, cache_root: Path | None
    ) -> BaseData:
        """Labelled base-class images oneclass's text-space student stage trains on."""
        raise self._cannot("labelled base classes")

    def novel(self, config: dict[str, Any], progress: Progress | None) -> NovelData:
        """The novel classes few-shot episodes are drawn from."""
        raise self._cannot("novel classes")

    def task(self, section: dict[str, Any], seed: int, progress: Progress | None) -> TaskData:
        """A downstream task: labelled train and test images and an unlabelled transfer set."""
        raise self._cannot("downstream task")

    def pool(
        self, section: dict[str, Any], progress: Progress | None, cache_root: Path | None
    ) -> Pool:
        """Labelled images (with their classes' names and taxonomy) for one-class tasks."""
        raise self._cannot("one-class image pool")

    def scenes(self, config: dict[str, Any], progress: Progress | None) -> SceneData:
        """A segmentation support pool and evaluation set."""
        raise self._cannot("segmentation scenes")

    def generic_pool(
        self, section: dict[str, Any], options: dict[str, Any], request: TransferRequest
    ) -> GenericPool:
        """A large unlabelled pool of images not curated for any task, for the ``generic``
        and ``retrieved`` transfer sets (``options``: the transfer set's)."""
        raise self._cannot("generic image pool")


def dataset_name(section: dict[str, Any]) -> str:
    """The registered dataset a config section reads."""
    return str(section.get("dataset") or DEFAULT_DATASET)


def open_source(registry: Registry, section: dict[str, Any], key: str) -> DataSource:
    """The :class:`DataSource` of the dataset ``section`` names; ``key`` is the section's
    dotted key (``fewshot.base``), for messages."""
    name = dataset_name(section)
    target = registry.get("datasets", name).load()
    if isinstance(target, DataSource):
        return target
    from kdbench.data.files import FileSource

    return FileSource(name, target, registry, key)

"""A dataset of files on disk as a :class:`~kdbench.data.source.DataSource`: each role reads
the split(s) its section names through the registered loader ``(root, split) -> split``
and decodes images at the section's ``image_size`` (shorter side resized to ``resize``,
centre crop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key
from kdbench.data.base_classes import BaseData, first_per_class
from kdbench.data.decoding import decode_split, stream_features
from kdbench.data.downstream import TaskData
from kdbench.data.novel import NovelData
from kdbench.data.pool import Pool, dataset_pool
from kdbench.data.scenes import SceneData, dataset_scenes
from kdbench.data.source import DataSource, Progress
from kdbench.errors import ConfigError
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity


class FileSource(DataSource):
    """The registered loader ``loader`` of dataset ``name``; ``key`` is the dotted key of
    the config section being read (for messages)."""

    def __init__(self, name: str, loader: Any, registry: Registry, key: str) -> None:
        self.name = name
        self.loader = loader
        self.registry = registry
        self.key = key

    def _root(self, section: dict[str, Any], hint: str = "") -> str:
        root = section.get("root")
        if not root:
            raise ConfigError(
                f"set the {self.name} folder: --set {self.key}.root=PATH"
                + (f" ({hint})" if hint else "")
            )
        return str(root)

    def _split(self, root: str, split: str, section: dict[str, Any]) -> Any:
        """The loader's ``split`` under ``root``, with the section's loader ``options``."""
        return self.loader(root, split, **(section.get("options") or {}))

    def _identity(self, split: Any, **sizes: int) -> DatasetIdentity:
        return DatasetIdentity(name=self.name, manifest_sha256=split.manifest_sha256, sizes=sizes)

    def base_classes(self, section: dict[str, Any], progress: Progress | None) -> BaseData:
        split = self._split(self._root(section), section["split"], section)
        size, resize = section["image_size"], section["resize"]
        return BaseData(
            lambda: split.load_all(size, resize, progress)[0],
            torch.from_numpy(np.asarray(split.labels, dtype=np.int64)),
            split.classes,
            self._identity(split, base=len(split)),
            cache_key(split.manifest_sha256, size, resize),
        )

    def text_stage(
        self, section: dict[str, Any], progress: Progress | None, cache_root: Path | None
    ) -> BaseData:
        """The first ``max_per_class`` images of every class, named by ``names_file``."""
        root = self._root(section, "labelled base images: an image folder, root/<split>/<class>/*")
        split = self._split(root, section["split"], section)
        names = list(split.classes)
        if section.get("names_file"):
            from kdbench.data.layout import read_mapping

            mapping = read_mapping(
                Path(section["names_file"]),
                ("folder", "names"),
                "a class-name file: '<folder> <name>[, <other names>]' per line",
            )
            names = [mapping.get(n, n).split(",")[0].strip() for n in names]
        keep = first_per_class(np.asarray(split.labels), section["max_per_class"])
        size, resize = section["image_size"], section["resize"]
        images = decode_split(
            split, size, resize, indices=keep.tolist(), progress=progress,
            desc="decode base images",
        )  # fmt: skip
        labels = torch.from_numpy(np.asarray(split.labels)[keep].astype(np.int64))
        digest = cache_key(split.manifest_sha256, keep.tolist(), size, resize)
        return BaseData(images, labels, names, self._identity(split, base=len(keep)), digest)

    def novel(self, config: dict[str, Any], progress: Progress | None) -> NovelData:
        """``novel.split``; its ``root`` defaults to ``base.root`` when the datasets match."""
        novel, base = config["novel"], config["base"]
        root = novel.get("root") or (
            base.get("root") if novel.get("dataset") == base.get("dataset") else None
        )
        if not root:
            prefix = self.key.rsplit(".", 1)[0]
            raise ConfigError(
                f"set the {self.name} folder: --set {prefix}.base.root=PATH (and "
                f"{self.key}.root=PATH if the novel classes live elsewhere)"
            )
        own = novel.get("root") or novel.get("dataset") != base.get("dataset")
        split = self._split(root, novel["split"], novel if own else {**base, **novel})
        size, resize = novel["image_size"], novel["resize"]
        return NovelData(
            lambda: split.load_all(size, resize, progress),
            np.asarray(split.labels, dtype=np.int64),
            list(split.classes),
            cache_key(split.manifest_sha256, size, resize),
            self._identity(split, novel=len(split)),
            stream=lambda model, device, progress: stream_features(
                model, split, size, resize, device=device, progress=progress
            ),
        )

    def task(self, section: dict[str, Any], seed: int, progress: Progress | None) -> TaskData:
        """``train_split`` and ``test_split``, and the image folder ``transfer_root`` (if
        set) as unlabelled transfer images."""
        root = self._root(section)
        size, resize = section["image_size"], section["resize"]
        loaded = {}
        for role in ("train", "test"):
            split = self._split(root, section[f"{role}_split"], section)
            loaded[role] = (split, *split.load_all(size, resize, progress))
        train_split, train_images, train_labels = loaded["train"]
        test_split, test_images, test_labels = loaded["test"]
        transfer = torch.zeros((0, *train_images.shape[1:]), dtype=torch.uint8)
        if section.get("transfer_root"):
            folder = self.registry.get("datasets", "imagefolder").load()
            unlabelled = folder(section["transfer_root"], "train")
            transfer, _ = unlabelled.load_all(size, resize, progress)
        identity = DatasetIdentity(
            name=self.name,
            manifest_sha256=cache_key(train_split.manifest_sha256, test_split.manifest_sha256),
            sizes={"train": len(train_labels), "test": len(test_labels), "transfer": len(transfer)},
        )
        return TaskData(
            train_images,
            train_labels,
            test_images,
            test_labels,
            transfer,
            train_split.classes,
            identity,
            {"train": train_split.manifest_sha256},
        )

    def generic_pool(self, section: dict[str, Any], options: dict[str, Any], request: Any) -> Any:
        """The image folder the transfer set's ``pool`` option names (any folder of
        images, e.g. ImageNet's train folder), decoded like the task's images."""
        from kdbench.transfer.pool import FolderPool

        if not options.get("pool"):
            raise ConfigError(
                "a generic pool on disk is an image folder given by path: --set "
                "distill.transfer=retrieved:pool=/data/imagenet/train"
            )
        return FolderPool(
            Path(str(options["pool"])), section["image_size"], section["resize"], request.progress
        )

    def pool(
        self, section: dict[str, Any], progress: Progress | None, cache_root: Path | None
    ) -> Pool:
        root = self._root(section, "layouts: docs/datasets.md")
        split = self._split(root, section["split"], section)
        return dataset_pool(
            self.name, split, image_size=section["image_size"], resize=section["resize"]
        )

    def scenes(self, config: dict[str, Any], progress: Progress | None) -> SceneData:
        data = config["data"]
        root = self._root(data, "see docs/datasets.md for the layout")
        return dataset_scenes(
            self.name,
            self._split(root, data["support_split"], data),
            self._split(root, data["eval_split"], data),
            image_size=config["image_size"],
            label_size=data["label_size"],
            eval_limit=data.get("eval_limit"),
            progress=progress,
        )

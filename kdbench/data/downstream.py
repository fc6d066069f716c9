"""The downstream task of task-specific distillation: labelled train and test images and an
unlabelled transfer set of the task's domain, from the Shapes world (embedded suite) or from
a registered dataset on disk (standard suite)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kdbench.cache import cache_key, tensor_digest
from kdbench.registry import Registry
from kdbench.results import DatasetIdentity


@dataclass
class TaskData:
    """A downstream task: labelled train and test images, and unlabelled transfer images."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    transfer_images: torch.Tensor
    class_names: list[str]
    identity: DatasetIdentity
    draws: dict[str, str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _digest(*tensors: torch.Tensor) -> str:
    return cache_key(*[tensor_digest({"t": t}) for t in tensors])


def load_task(
    config: dict[str, Any], suite: str, seed: int, registry: Registry, progress: Callable[..., Any]
) -> TaskData:
    """The downstream task's data for ``suite``."""
    data = config["data"]
    if suite == "embedded":
        from kdbench.world import ShapesWorld

        world = ShapesWorld()
        classes = world.classes(data["split"])[: data["classes"]]
        train = world.images(
            data["split"], data["train_per_class"], seed, "distill/train", data["domain"], classes
        )
        test = world.images(
            data["split"], data["test_per_class"], 0, "distill/test", data["domain"], classes
        )
        # unlabelled images of the task's domain, of the same classes, drawn afresh
        transfer_labels = np.repeat(classes, -(-data["transfer_images"] // len(classes)))
        transfer_labels = transfer_labels[: data["transfer_images"]]
        transfer = torch.from_numpy(
            world.render(transfer_labels, seed, "distill/transfer", data["domain"])
        )
        identity = world.identity(train=len(train), test=len(test), transfer=len(transfer))
        return TaskData(
            train.images,
            train.labels,
            test.images,
            test.labels,
            transfer,
            train.names,
            identity,
            {"train": _digest(train.images, train.labels), "transfer": _digest(transfer)},
        )
    loader = registry.get("datasets", data["dataset"]).load()
    if not data.get("root"):
        raise ValueError(f"set the {data['dataset']} folder: --set distill.data.root=PATH")
    splits = {}
    for role in ("train", "test"):
        split = loader(data["root"], data[f"{role}_split"])
        images, labels = split.load_all(data["image_size"], data["resize"], progress)
        splits[role] = (split, images, labels)
    train_split, train_images, train_labels = splits["train"]
    test_split, test_images, test_labels = splits["test"]
    transfer = torch.zeros((0, *train_images.shape[1:]), dtype=torch.uint8)
    if data.get("transfer_root"):
        unl = registry.get("datasets", "imagefolder").load()(data["transfer_root"], "train")
        transfer, _ = unl.load_all(data["image_size"], data["resize"], progress)
    identity = DatasetIdentity(
        name=data["dataset"],
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

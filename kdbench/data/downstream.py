"""The downstream task of task-specific distillation: labelled train and test images and an
unlabelled transfer set of the task's domain, from the registered dataset the ``data``
section names (:mod:`kdbench.data.source`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kdbench.data.source import open_source
from kdbench.phases import in_phase
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


@in_phase("data")
def load_task(
    section: dict[str, Any],
    seed: int,
    registry: Registry,
    progress: Callable[..., Any] | None,
    key: str = "distill.data",
) -> TaskData:
    """The downstream task the ``data`` section names (its train images and transfer set
    may depend on ``seed``)."""
    return open_source(registry, section, key).task(section, seed, progress)

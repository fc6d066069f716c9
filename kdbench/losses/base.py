"""What a distillation loss is: a module that reads student (and teacher) outputs and
declares which ones, so a protocol computes only what is needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from kdbench.models.backbone import Features

#: Everything a loss may read.
INPUTS = frozenset(
    {
        "labels",
        "student.logits", "teacher.logits",
        "student.pooled", "teacher.pooled",
        "student.tokens", "teacher.tokens",
        "student.layers", "teacher.layers",
    }
)  # fmt: skip


@dataclass(frozen=True)
class LossShapes:
    """Sizes a loss may need to build projectors."""

    student_dim: int
    teacher_dim: int | None
    num_classes: int
    student_layers: int = 1
    teacher_layers: int = 1
    student_layer_dims: tuple[int, ...] = ()
    """Width of each of the student's ``student_layers`` layers; empty when unknown, which
    losses read as every layer at ``student_dim`` (true of ViTs, not of CNNs)."""

    def student_layer_dim(self, index: int) -> int:
        """Width of the student's layer ``index`` (negative counts from the end)."""
        if not self.student_layer_dims:
            return self.student_dim
        return self.student_layer_dims[index % len(self.student_layer_dims)]


class DistillationLoss(nn.Module):
    """Base class: subclasses set ``requires`` and implement ``forward``.

    ``forward(student, teacher, labels)`` gets :class:`~kdbench.models.backbone.Features`
    (``teacher`` is ``None`` when nothing in ``requires`` starts with ``teacher.``) and
    returns a scalar. Trainable parts (projectors) are ordinary submodules: they train with
    the student and are discarded afterwards.
    """

    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, shapes: LossShapes) -> None:
        super().__init__()
        self.shapes = shapes
        unknown = set(self.requires) - INPUTS
        if unknown:
            raise ValueError(f"{type(self).__name__} requires unknown inputs {sorted(unknown)}")

    def student_layer_indices(self) -> list[int]:
        """Intermediate student layers to compute when ``student.layers`` is required."""
        return []

    def teacher_layer_indices(self) -> list[int]:
        """Intermediate teacher layers to compute when ``teacher.layers`` is required."""
        return []

    def forward(
        self, student: Features, teacher: Features | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

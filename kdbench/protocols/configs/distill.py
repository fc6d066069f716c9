"""The ``distill`` protocol's config, per suite."""

from __future__ import annotations

from typing import Any

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from kdbench.protocols.configs.model import ConfigModel
from kdbench.protocols.configs.sections import (
    LoRA,
    ModelSpec,
    PrecisionSection,
    ShapesDomain,
    ShapesSplit,
)


class Rates(ConfigModel):
    """Learning rates per stage. The teacher's rate is ``lr.<teacher mode>`` when the table
    has the mode, else ``lp`` for a frozen adapter and ``ft`` for the others."""

    lp: PositiveFloat
    """Teacher adaptation with a frozen backbone (linear probe)."""
    ft: PositiveFloat
    """Teacher adaptation that trains the backbone (fine-tuning)."""
    lora: PositiveFloat
    """Teacher adaptation with LoRA."""
    student: PositiveFloat
    """Distilling the pretrained student."""
    student_scratch: PositiveFloat
    """Training the student from random weights (the ``scratch`` reference row)."""


class Distill(ConfigModel):
    """Keys of both suites."""

    teacher: ModelSpec
    """The teacher, adapted to the task before distillation."""
    student: ModelSpec
    """The student, distilled from the adapted teacher."""
    teacher_epochs: NonNegativeInt
    """Epochs of teacher adaptation over the task's training images."""
    student_epochs: NonNegativeInt
    """Epochs' worth of steps for the student (the same step budget for every method)."""
    batch_size: PositiveInt
    """Training batch size (teacher and student)."""
    lr: Rates
    """Learning rates."""
    lora: LoRA
    """LoRA options when the teacher mode is ``lora``."""
    cka_images: PositiveInt
    """Test images the linear CKA between teacher and student is computed on."""
    precision: PrecisionSection | None = None
    """The precision the student is scored at; absent: fp32."""
    transfer: str | None = Field(default=None, json_schema_extra={"omit_if_unset": True})
    """The transfer set every method of the run distils on, ``NAME[:key=value,...]``
    (``kdbench ls transfer_sets``; e.g. ``retrieved:by=student``), instead of the one each
    recipe names. Left out of the recorded config when not set."""


class ShapesTask(ConfigModel):
    """A downstream task drawn from the Shapes world."""

    split: ShapesSplit
    """The Shapes class split the task's classes come from."""
    classes: PositiveInt
    """How many of the split's classes the task has (the first ones)."""
    domain: ShapesDomain
    """Rendering domain of the task's images."""
    train_per_class: PositiveInt
    """Labelled training images per class."""
    test_per_class: PositiveInt
    """Test images per class (a fixed set, the same for every seed)."""
    transfer_images: NonNegativeInt
    """Unlabelled images of the task's domain for distillation (the transfer set)."""


class DatasetTask(ConfigModel):
    """A downstream task on a registered classification dataset."""

    dataset: str
    """A registered dataset (``kdbench ls datasets``)."""
    root: str | None
    """The dataset's folder; null until set (``--set distill.data.root=PATH``)."""
    train_split: str
    """The split the teacher and student train on."""
    test_split: str
    """The split they are scored on."""
    image_size: PositiveInt
    """Decoded image size in pixels (square centre crop)."""
    resize: PositiveInt | None
    """The shorter side is resized to this before the centre crop (null: to ``image_size``)."""
    transfer_root: str | None
    """An image folder of unlabelled transfer images (``root/train/<class>/*``); null: none."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword options of the dataset's loader, e.g. ``{"fold": 2}`` for DTD, ``{"level":
    "family"}`` for FGVC-Aircraft, ``{"mask_dir": "SegmentationClassAug"}`` for VOC
    (``docs/datasets.md``); checked against the loader before any unit starts. Left out of
    the recorded config when empty."""


class DistillEmbedded(Distill):
    """``distill`` on the Shapes world."""

    data: ShapesTask
    """The downstream task."""


class DistillStandard(Distill):
    """``distill`` on a dataset on disk (CUB by default)."""

    data: DatasetTask
    """The downstream task."""


MODELS = {"embedded": DistillEmbedded, "standard": DistillStandard}


def defaults(suite: str, smoke: bool) -> dict[str, Any]:
    """The ``distill`` protocol's config for ``suite``; ``smoke`` shrinks it to seconds."""
    if suite == "embedded":
        config: dict[str, Any] = {
            "teacher": {"name": "shapes-teacher", "options": {}},
            "student": {"name": "shapes-student", "options": {}},
            "data": {
                "split": "downstream",
                "classes": 30,
                "domain": "shift",
                "train_per_class": 10,
                "test_per_class": 40,
                "transfer_images": 6000,
            },
            "teacher_epochs": 40,
            "student_epochs": 150,
            "batch_size": 64,
            "lr": {
                "lp": 5e-3,
                "ft": 3e-4,
                "lora": 1e-3,
                "student": 5e-4,
                "student_scratch": 1e-3,
            },
            "lora": {"r": 16, "alpha": 16, "dropout": 0.1, "targets": ["qkv"]},
            "cka_images": 500,
        }
        if smoke:
            config["data"].update(
                classes=5, train_per_class=4, test_per_class=4, transfer_images=40
            )
            config.update(teacher_epochs=2, student_epochs=2, batch_size=16, cka_images=16)
        return config
    return {
        "teacher": {
            "name": "timm:vit_base_patch14_dinov2.lvd142m",
            "options": {"img_size": 224},
        },
        "student": {
            "name": "timm:vit_small_patch14_dinov2.lvd142m",
            "options": {"img_size": 224},
        },
        "data": {
            "dataset": "cub",
            "root": None,
            "train_split": "train",
            "test_split": "test",
            "image_size": 224,
            "resize": 256,
            "transfer_root": None,
        },
        "teacher_epochs": 2 if smoke else 30,
        "student_epochs": 2 if smoke else 30,
        "batch_size": 32,
        "lr": {"lp": 1e-3, "ft": 1e-5, "lora": 1e-4, "student": 5e-5, "student_scratch": 5e-4},
        "lora": {"r": 16, "alpha": 16, "dropout": 0.1, "targets": ["qkv"]},
        "cka_images": 16 if smoke else 1000,
    }

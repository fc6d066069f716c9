"""The ``oneclass`` protocol's config, per suite."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from kdbench.protocols.configs.model import ConfigModel
from kdbench.protocols.configs.sections import (
    DatasetSplit,
    ModelSpec,
    PrecisionSection,
    ShapesDomain,
    ShapesSplit,
)

Score = Literal["margin", "target"]
"""How a task ranks images (``kdbench.oneclass.SCORES``)."""
ShapesDistance = Literal["root", "tone", "colour", "shape", "uniform"]
"""Negative distances on the Shapes taxonomy: the rank of the lowest common ancestor of
target and negatives (the class's own rank is not one), or ``uniform``."""


class Confusers(ConfigModel):
    """Where each target's confuser labels come from."""

    source: str
    """A registered confuser source (``kdbench ls confusers``): ``frozen``, ``taxonomy``,
    ``random`` or a plugin's."""
    k: PositiveInt
    """Confusers per target."""
    options: dict[str, Any]
    """Keyword options for the source, e.g. ``{"file": "confusers.json"}``."""


class Tasks(ConfigModel):
    """The one-class tasks: a target class, its positives and negatives at one distance."""

    distances: Annotated[list[str], Field(min_length=1)] | None
    """Negative distances (taxonomy ranks, or ``uniform``); null: every rank above the class,
    or ``uniform`` when the dataset has no taxonomy."""
    positives: PositiveInt | None
    """Positives (and as many negatives) per task; null: every image of the target."""
    per_target: PositiveInt
    """Tasks per target and distance."""
    max_targets: PositiveInt | None
    """Targets drawn at random from the classes with images; null: every class."""


class ShapesTasks(Tasks):
    """The one-class tasks on the Shapes taxonomy."""

    distances: Annotated[list[ShapesDistance], Field(min_length=1)] | None
    """Negative distances; null: every rank above the class."""


class OneClass(ConfigModel):
    """Keys of both suites."""

    teacher: ModelSpec
    """An image–text teacher (with a text tower), e.g. ``shapes-clip`` or ``open_clip:...``."""
    student: ModelSpec
    """The student, adapted to the teacher's text space by the student stage."""
    prompt: str
    """Text template of a label; ``{}`` is replaced by the class name."""
    confusers: Confusers
    """Confuser labels."""
    score: Score
    """``margin``: target similarity minus the mean confuser similarity; ``target``: the
    target similarity alone."""
    zero_shot_top1: bool
    """Also report zero-shot top-1 over the pool's class names."""
    precision: PrecisionSection | None = None
    """The precision the student is scored at; absent: fp32."""


class ShapesPool(ConfigModel):
    """The evaluation pool: rendered images of Shapes classes."""

    splits: Annotated[list[ShapesSplit], Field(min_length=1)]
    """Shapes class splits the pool's classes come from."""
    per_class: PositiveInt
    """Rendered images per class."""
    domain: ShapesDomain
    """Rendering domain of the pool's images."""


class ShapesStudentStage(ConfigModel):
    """The student stage on the Shapes base classes: a method's recipe adapts the pretrained
    student to the teacher's text space, using the base classes' names."""

    train_per_class: PositiveInt
    """Rendered base images per class."""
    epochs: NonNegativeInt
    """Epochs over the base images."""
    batch_size: PositiveInt
    """Training batch size."""
    lr: PositiveFloat
    """Peak learning rate."""
    ridge: NonNegativeFloat
    """Ridge penalty (relative to the features' mean energy) of the closed-form map that
    puts the pretrained student's features into the text space (the ``student`` row)."""


class DatasetStudentStage(DatasetSplit):
    """The student stage on labelled base images from a dataset on disk."""

    names_file: str | None
    """A class-name file (``<folder> <name>[, <other names>]`` per line) giving the folders'
    class names; null: the folder names."""
    max_per_class: PositiveInt | None
    """At most this many images per class (the first ones); null: all."""
    epochs: NonNegativeInt
    """Epochs over the base images."""
    batch_size: PositiveInt
    """Training batch size."""
    lr: PositiveFloat
    """Peak learning rate."""
    ridge: NonNegativeFloat
    """Ridge penalty (relative to the features' mean energy) of the closed-form map that
    puts the pretrained student's features into the text space (the ``student`` row)."""


class OneClassEmbedded(OneClass):
    """``oneclass`` on the Shapes world."""

    data: ShapesPool
    """The evaluation pool."""
    tasks: ShapesTasks
    """The tasks."""
    student_stage: ShapesStudentStage
    """How a method's student is trained before it is scored."""


class OneClassStandard(OneClass):
    """``oneclass`` on a dataset on disk (iNaturalist 2021 val by default)."""

    data: DatasetSplit
    """The evaluation pool."""
    tasks: Tasks
    """The tasks."""
    student_stage: DatasetStudentStage
    """How a method's student is trained before it is scored."""


MODELS = {"embedded": OneClassEmbedded, "standard": OneClassStandard}


def defaults(suite: str, smoke: bool) -> dict[str, Any]:
    """The ``oneclass`` protocol's config for ``suite``; ``smoke`` shrinks it to seconds."""
    from kdbench.oneclass import SHAPES_DISTANCES  # the Shapes taxonomy's levels

    if suite == "embedded":
        config: dict[str, Any] = {
            "teacher": {"name": "shapes-clip", "options": {}},
            "student": {"name": "shapes-student", "options": {}},
            "prompt": "a photo of a {}.",
            "data": {"splits": ["novel", "downstream"], "per_class": 40, "domain": "base"},
            "tasks": {
                "distances": list(SHAPES_DISTANCES),
                "positives": 20,
                "per_target": 1,
                "max_targets": None,
            },
            "confusers": {"source": "frozen", "k": 10, "options": {}},
            "score": "margin",
            "zero_shot_top1": True,
            "student_stage": {
                "train_per_class": 100,
                "epochs": 2,
                "batch_size": 128,
                "lr": 1e-3,
                "ridge": 1e-3,
            },
        }
        if smoke:
            config["data"].update(per_class=4)
            config["tasks"].update(positives=3, max_targets=12)
            config["student_stage"].update(train_per_class=2, epochs=1, batch_size=64)
        return config
    return {
        "teacher": {
            "name": "open_clip:ViT-B-16-quickgelu",
            "options": {"pretrained": "openai"},
        },
        "student": {"name": "timm:vit_small_patch16_224", "options": {"img_size": 224}},
        "prompt": "a photo of a {}.",
        "data": {
            "dataset": "inat2021",
            "root": None,
            "split": "val",
            "image_size": 224,
            "resize": 224,
        },
        "tasks": {
            "distances": None,
            "positives": None,
            "per_target": 1,
            "max_targets": 20 if smoke else None,
        },
        "confusers": {"source": "taxonomy", "k": 10, "options": {}},
        "score": "margin",
        "zero_shot_top1": False,
        "student_stage": {
            "dataset": "imagefolder",
            "root": None,
            "split": "train",
            "names_file": None,
            "max_per_class": 4 if smoke else 50,
            "image_size": 224,
            "resize": 224,
            "epochs": 1 if smoke else 30,
            "batch_size": 128,
            "lr": 5e-4,
            "ridge": 1e-3,
        },
    }

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

"""Config sections several protocols share, and the closed sets their values come from."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from kdbench.protocols.configs.model import ConfigModel

Suite = Literal["embedded", "standard"]
"""The suites (``kdbench.protocols.base.SUITES``)."""
ShapesSplit = Literal["base", "novel", "downstream"]
"""The Shapes world's class splits (``kdbench.world.world.SPLITS``)."""
ShapesDomain = Literal["base", "shift"]
"""The Shapes world's rendering domains (``kdbench.world.render.DOMAINS``)."""

Fraction = Annotated[float, Field(ge=0, lt=1)]


class ModelSpec(ConfigModel):
    """A registered teacher or student and the options its factory is called with."""

    name: str
    """The registered name (``kdbench ls teachers``, ``kdbench ls students``), e.g.
    ``shapes-student`` or ``timm:mobilevit_xs``."""
    options: dict[str, Any]
    """Keyword options for the factory, e.g. ``{"img_size": 224, "weights": "w.safetensors"}``."""


class DatasetSplit(ConfigModel):
    """A split of a registered dataset on disk (standard suite; layouts in docs/datasets.md)."""

    dataset: str
    """A registered dataset (``kdbench ls datasets``)."""
    root: str | None
    """The dataset's folder; null until set (``--set ...root=PATH``)."""
    split: str
    """The split to read, e.g. ``train`` or ``test``."""
    image_size: PositiveInt
    """Decoded image size in pixels (square centre crop)."""
    resize: PositiveInt | None
    """The shorter side is resized to this before the centre crop (null: to ``image_size``)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword options of the dataset's loader, e.g. ``{"fold": 2}`` for DTD, ``{"level":
    "family"}`` for FGVC-Aircraft, ``{"mask_dir": "SegmentationClassAug"}`` for VOC
    (``docs/datasets.md``); checked against the loader before any unit starts. Left out of
    the recorded config when empty."""


class LoRA(ConfigModel):
    """Low-rank adapters on the linear layers named by ``targets``."""

    r: PositiveInt
    """Rank of the update."""
    alpha: int | float
    """Scale numerator: the update is multiplied by ``alpha / r``."""
    dropout: Fraction
    """Dropout on the adapter's input."""
    targets: list[str]
    """Linear layers to adapt, by the last part of their module name, e.g. ``qkv``."""


class BaseStage(ConfigModel):
    """The base-class distillation stage shared by ``fewshot`` and ``segmentation``: the
    method's recipe trains the student from random weights on the base classes. Identical
    ``base`` sections share the trained student (it is cached by this section)."""

    teacher: ModelSpec
    """The teacher the student learns from (its base-class logits come from a linear probe)."""
    student: ModelSpec
    """The student architecture, trained from random weights."""
    epochs: NonNegativeInt
    """Epochs over the base images."""
    batch_size: PositiveInt
    """Training batch size."""
    lr: PositiveFloat
    """Peak learning rate (AdamW, warm-up and cosine decay)."""
    probe_epochs: NonNegativeInt
    """Epochs of the teacher's linear probe on its frozen base-class embeddings."""
    probe_lr: PositiveFloat
    """Learning rate of the teacher's linear probe."""


class ShapesBaseStage(BaseStage):
    """The base stage on the Shapes world's base classes (embedded suite)."""

    train_per_class: PositiveInt
    """Rendered base images per class (120 base classes)."""


class DatasetBaseStage(BaseStage, DatasetSplit):
    """The base stage on a dataset's base split (standard suite, miniImageNet by default)."""


class PrecisionSection(ConfigModel):
    """The precision the student is scored at, when it is not fp32 (``kdbench run
    --precision``; see docs/quantization.md). Absent from fp32 configs."""

    name: str
    """``int8`` or ``int8-tensor`` (static post-training quantisation, real int8 kernels on
    x86), ``int<b>-sim`` (simulated, b from 2 to 16)."""
    calibration_images: PositiveInt
    """Training images the activation ranges are calibrated on (a fixed, seeded subset)."""
    calibration_seed: NonNegativeInt
    """The seed of that subset (the same for every method and unit seed)."""

"""The ``segmentation`` protocol's config, per suite."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from kdbench.protocols.configs.model import ConfigModel
from kdbench.protocols.configs.sections import (
    DatasetBaseStage,
    LoRA,
    PrecisionSection,
    ShapesBaseStage,
    ShapesDomain,
)

Shot = Literal[1, 2, 5, 10]
"""Support images per class with a metric (``kdbench.protocols.segmentation.SHOTS``)."""


class Head(ConfigModel):
    """Training of a frozen-backbone head (BatchNorm + 1x1 conv) on cached token maps."""

    steps: NonNegativeInt
    """Training steps per (k, draw)."""
    batch_size: PositiveInt
    """Support images per step."""
    lr: PositiveFloat
    """Peak learning rate (AdamW, warm-up and cosine decay)."""
    weight_decay: NonNegativeFloat
    """AdamW weight decay (also used for the adapted backbones)."""


class AdaptedRates(ConfigModel):
    """Learning rates of the adapters that train the backbone."""

    finetune: PositiveFloat
    """Full fine-tuning."""
    lora: PositiveFloat
    """LoRA."""
    svf: PositiveFloat
    """Singular-value fine-tuning."""


class Adapted(ConfigModel):
    """Training of an adapted backbone together with its head, from the linear head."""

    steps: NonNegativeInt
    """Training steps per (k, draw)."""
    batch_size: PositiveInt
    """Support images per step."""
    lr: AdaptedRates
    """Learning rate per adapter."""


class Multilayer(ConfigModel):
    """Options of the ``multilayer`` adapter."""

    n: PositiveInt
    """How many of the last layers' token maps are concatenated."""


class SVF(ConfigModel):
    """Options of the ``svf`` adapter."""

    scope: str
    """Module-name prefix whose linear layers get trainable singular values."""


class AdapterEntry(ConfigModel):
    """An adapter with its own options and learning rate (e.g. a plugin's adapter)."""

    name: str
    """A registered adapter (``kdbench ls adapters``)."""
    options: dict[str, Any] | None = None
    """Its options (default: the config section named after it, else its defaults)."""
    lr: PositiveFloat | None = None
    """Its learning rate when it trains the backbone (default: ``adapted.lr.<name>``)."""


class Segmentation(ConfigModel):
    """Keys of both suites."""

    shots: Annotated[list[Shot], Field(min_length=1)]
    """Support images per class (k): a subset of 1, 2, 5 and 10."""
    draws: Annotated[list[NonNegativeInt], Field(min_length=1)]
    """Seeds of the support draws (the same support sets for every method)."""
    adapters: Annotated[list[str | AdapterEntry], Field(min_length=1)]
    """Registered adapters to score (``kdbench ls adapters``), each a name or
    ``{"name", "options", "lr"}``; the first is the headline."""
    head: Head
    """Frozen-head training."""
    adapted: Adapted
    """Adapted-backbone training."""
    multilayer: Multilayer
    """``multilayer`` options."""
    lora: LoRA
    """``lora`` options."""
    svf: SVF
    """``svf`` options."""
    batch_size: PositiveInt
    """Feature extraction and evaluation batch size."""
    cache_features: bool
    """Keep the frozen token maps in the on-disk cache (false: in memory only)."""
    image_size: PositiveInt
    """Backbone input size in pixels (a trained student's position embeddings are
    resampled to it)."""
    precision: PrecisionSection | None = None
    """The precision the student is scored at (frozen adapters only); absent: fp32."""


class ShapesScenes(ConfigModel):
    """Shapes scenes with masks."""

    pool: PositiveInt
    """Scenes in the support pool."""
    eval: PositiveInt
    """Scenes in the evaluation set."""
    domain: ShapesDomain
    """Rendering domain of the scenes."""
    max_objects: Annotated[int, Field(ge=2)]
    """Most objects in a scene (each has 2 to this many)."""


class DatasetScenes(ConfigModel):
    """A registered segmentation dataset on disk."""

    dataset: str
    """A registered segmentation dataset (``cityscapes``, ``coco``, ``voc``)."""
    root: str | None
    """The dataset's folder; null until set (``--set segmentation.data.root=PATH``)."""
    support_split: str
    """The split the support pool is drawn from."""
    eval_split: str
    """The split the heads are scored on."""
    label_size: PositiveInt
    """Masks are resized (nearest) to this square; logits are upsampled to it."""
    eval_limit: PositiveInt | None
    """Score only the first N evaluation images; null: all."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword options of the dataset's loader, e.g. ``{"mask_dir": "SegmentationClassAug"}``
    for VOC (``docs/datasets.md``); checked against the loader before any unit starts. Left
    out of the recorded config when empty."""


class SegmentationEmbedded(Segmentation):
    """``segmentation`` on Shapes scenes."""

    base: ShapesBaseStage
    """The base stage that trains the scored student (shared with fewshot)."""
    data: ShapesScenes
    """Support pool and evaluation scenes."""


class SegmentationStandard(Segmentation):
    """``segmentation`` on a dataset on disk (Cityscapes by default)."""

    base: DatasetBaseStage
    """The base stage that trains the scored student (shared with fewshot)."""
    data: DatasetScenes
    """Support pool and evaluation images."""


MODELS = {"embedded": SegmentationEmbedded, "standard": SegmentationStandard}


def defaults(suite: str, smoke: bool, base: dict[str, Any]) -> dict[str, Any]:
    """The ``segmentation`` protocol's config for ``suite`` (``smoke`` shrinks it to
    seconds), with ``base``, the base-class stage's section."""
    common: dict[str, Any] = {
        "base": base,
        "shots": [1, 2, 5, 10],
        "draws": [0, 1, 2],
        "adapters": ["linear"],
        "head": {"steps": 200, "batch_size": 8, "lr": 1e-2, "weight_decay": 1e-4},
        "adapted": {
            "steps": 100,
            "batch_size": 8,
            "lr": {"finetune": 1e-4, "lora": 1e-3, "svf": 1e-3},
        },
        "multilayer": {"n": 4},
        "lora": {"r": 16, "alpha": 16, "dropout": 0.1, "targets": ["qkv"]},
        "svf": {"scope": "blocks"},
        "batch_size": 64,
        "cache_features": True,
    }
    if suite == "embedded":
        config = {
            **common,
            "image_size": 64,
            "data": {"pool": 300, "eval": 300, "domain": "base", "max_objects": 4},
        }
        if smoke:
            config["data"].update(pool=24, eval=12)
            config.update(shots=[1, 2], draws=[0, 1], batch_size=16)
            config["head"].update(steps=5)
            config["adapted"].update(steps=2, batch_size=4)
        return config
    config = {
        **common,
        "image_size": 1022,
        "data": {
            "dataset": "cityscapes",
            "root": None,
            "support_split": "train",
            "eval_split": "val",
            "label_size": 1022,
            "eval_limit": None,
        },
        "batch_size": 8,
        "cache_features": False,
    }
    config["head"].update(steps=1000, batch_size=4)
    config["adapted"].update(steps=500, batch_size=4)
    if smoke:
        config.update(shots=[1], draws=[0], image_size=56)
        config["data"].update(label_size=56, eval_limit=4)
        config["head"].update(steps=5)
        config["adapted"].update(steps=2)
    return config

"""The ``fewshot`` protocol's config, per suite."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt

from kdbench.protocols.configs.model import ConfigModel
from kdbench.protocols.configs.sections import (
    DatasetBaseStage,
    DatasetSplit,
    PrecisionSection,
    ShapesBaseStage,
    ShapesDomain,
)

Shot = Literal[1, 5]
"""Shot settings with a metric (``kdbench.protocols.fewshot.SHOTS``)."""


class Estimate(ConfigModel):
    """The accuracy predicted without query labels (``est_acc_*``)."""

    draws: PositiveInt
    """Monte Carlo draws per episode."""


class FewShot(ConfigModel):
    """Keys of both suites."""

    ways: Annotated[int, Field(ge=2)]
    """Classes per episode."""
    shots: Annotated[list[Shot], Field(min_length=1)]
    """Support images per class: a subset of 1 and 5 (the metrics are fixed)."""
    queries: PositiveInt
    """Query images per class per episode."""
    episodes: PositiveInt
    """Episodes per shot setting."""
    estimate: Estimate
    """The label-free accuracy estimate."""
    precision: PrecisionSection | None = None
    """The precision the student is scored at; absent: fp32."""


class ShapesNovel(ConfigModel):
    """The Shapes novel classes (60) the episodes are drawn from."""

    per_class: PositiveInt
    """Rendered images per novel class."""
    domain: ShapesDomain
    """Rendering domain of the novel images."""


class FewShotEmbedded(FewShot):
    """``fewshot`` on the Shapes world."""

    base: ShapesBaseStage
    """The base stage that trains the scored student (shared with segmentation)."""
    novel: ShapesNovel
    """Where the episodes come from."""


class FewShotStandard(FewShot):
    """``fewshot`` on miniImageNet (or another dataset on disk)."""

    base: DatasetBaseStage
    """The base stage that trains the scored student (shared with segmentation)."""
    novel: DatasetSplit
    """Where the episodes come from; ``root`` null reads ``base.root`` when the datasets
    match."""


MODELS = {"embedded": FewShotEmbedded, "standard": FewShotStandard}

"""The ``device`` protocol's config (the same keys in both suites)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, field_validator

from kdbench.protocols.configs.model import ConfigModel
from kdbench.protocols.configs.sections import ModelSpec, PrecisionSection

Precision = Literal["fp32", "bf16", "fp16", "int8"]
"""Numeric precisions a model is measured at (``kdbench.device.precision.PRECISIONS``)."""


class Latency(ConfigModel):
    """The batch-1 latency window: it runs until both minimums are met."""

    warmup: NonNegativeInt
    """Untimed queries first."""
    min_queries: PositiveInt
    """Fewest timed queries (a ranked run needs at least 1000, smoke 64)."""
    min_seconds: NonNegativeFloat
    """Shortest timed window in seconds (a ranked run needs at least 10)."""


class Throughput(ConfigModel):
    """The throughput window at batch ``batch_size``: it runs until both minimums are met."""

    batch_size: PositiveInt
    """Images per batch."""
    warmup: NonNegativeInt
    """Untimed batches first."""
    min_batches: PositiveInt
    """Fewest timed batches."""
    min_seconds: NonNegativeFloat
    """Shortest timed window in seconds."""


class DeviceConfig(ConfigModel):
    """``device``: what the teacher and the student cost on this machine."""

    teacher: ModelSpec
    """The teacher measured by the ``teacher`` row."""
    student: ModelSpec
    """The student measured by the ``student`` row."""
    img_size: PositiveInt
    """Input size in pixels, passed to the factory as ``img_size``."""
    throughput: Throughput
    """The throughput window."""
    random_if_missing: bool
    """Build with random weights when the weights are unavailable (noted in the record;
    weights do not change the cost)."""
    precisions: Annotated[list[Precision], Field(min_length=1)]
    """Precisions to measure, fp32 included (the headline); ``"fp32,int8"`` is accepted."""
    threads: PositiveInt | None
    """CPU threads to pin; null: the physical cores available to the process."""
    pool_images: Annotated[int, Field(ge=64)]
    """Distinct input images cycled through the windows."""
    latency: Latency
    """The latency window."""
    sensor: str | None
    """Energy sensor: ``auto`` (the first readable one), ``none`` (or null), or a
    registered sensor's name (``kdbench ls sensors``)."""
    idle_seconds: NonNegativeFloat
    """Idle power window in seconds before measuring (stretched to 100 sensor updates)."""
    precision: PrecisionSection | None = None
    """A scoring precision (``kdbench run --precision``) whose statically quantised model
    is also timed, against fp32 through the same compiler; absent: none."""

    @field_validator("precisions", mode="before")
    @classmethod
    def _split_precisions(cls, value: Any) -> Any:
        """``"fp32,int8"`` -> ``["fp32", "int8"]``, in the order of :data:`Precision`, once
        each, so one choice of precisions has one config hash."""
        if isinstance(value, str):
            value = [p.lower() for p in re.split(r"[,\s]+", value) if p]
        if isinstance(value, list) and all(isinstance(p, str) for p in value):
            order = get_args(Precision)
            known = sorted({p for p in value if p in order}, key=order.index)
            value = known + [p for p in dict.fromkeys(value) if p not in order]
        return value


MODELS = {"embedded": DeviceConfig, "standard": DeviceConfig}

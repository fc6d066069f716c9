"""What the device protocol measures: a registered backbone (with random weights when its
weights are unavailable) and a seeded pool of distinct input images."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kdbench.errors import ConfigError
from kdbench.models.backbone import Backbone, WeightsError
from kdbench.registry import Registry
from kdbench.seeding import rng

POOL_STREAM = "device/pool"


def image_pool(count: int, seed: int, size: tuple[int, int]) -> torch.Tensor:
    """``count`` distinct Shapes world images (float in [0, 1]) at ``size``, seeded."""
    from kdbench.world import ShapesWorld

    if count < 1:
        raise ConfigError("device: pool_images must be at least 1")
    world = ShapesWorld()
    classes = rng(seed, POOL_STREAM, "classes").choice(world.classes("base"), size=count)
    images = torch.from_numpy(world.render(classes, seed, POOL_STREAM)).float().div_(255)
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(
            images, size=size, mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0, 1)
    return images.contiguous()


def _size_option(factory: Any) -> str:
    """The keyword a factory takes its input size by: ``img_size`` (timm, Shapes) or
    ``image_size`` (open_clip)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return "img_size"
    return "image_size" if "image_size" in params and "img_size" not in params else "img_size"


def load_backbone(
    registry: Registry,
    kind: str,
    spec: dict[str, Any],
    img_size: int | None,
    random_if_missing: bool,
) -> tuple[Backbone, dict[str, Any], list[str]]:
    """The backbone to measure, the options it was built with, and notes.

    With ``random_if_missing`` a backbone whose weights are unavailable is built with
    random weights instead (cost does not depend on weight values); an explicit
    ``weights`` file that is missing is still an error.
    """
    component = registry.get(kind, spec["name"])
    options = dict(spec.get("options", {}))
    factory = component.load()
    if img_size is not None:
        options[_size_option(factory)] = int(img_size)
    notes: list[str] = []
    try:
        backbone = factory(**options)
        options.setdefault("pretrained", True)
    except WeightsError as error:
        if not random_if_missing or options.get("weights"):
            raise
        options["pretrained"] = False
        backbone = factory(**options)
        notes.append(
            f"{spec['name']}: weights unavailable ({error}); measured with random weights "
            "(the cost of this architecture does not depend on weight values)"
        )
    return backbone, options, notes

"""The Shapes ViT family at two more sizes around ``shapes-student`` (4 blocks x 64): the
same patch 4, MLP ratio 4 and class token, built by the same code as the teacher and the
student, so methods that assume one family (SLAD) apply to them too."""

from __future__ import annotations

from pathlib import Path

from kdbench.models.backbone import Backbone
from kdbench.models.zoo import zoo_backbone
from kdbench.world.models import IMAGE_SIZE, vit_backbone

SIZES: dict[str, dict[str, int]] = {
    "xs": {"embed_dim": 32, "depth": 4, "num_heads": 2},
    "m": {"embed_dim": 96, "depth": 6, "num_heads": 3},
}


def _shapes_vit(size: str, weights: str | Path | None, pretrained: bool, img_size: int) -> Backbone:
    name = f"shapes-vit-{size}"
    backbone = vit_backbone(name, SIZES[size], img_size)
    return zoo_backbone(backbone.model, name, weights, pretrained, img_size)


def shapes_vit_xs(
    weights: str | Path | None = None, pretrained: bool = True, img_size: int = IMAGE_SIZE
) -> Backbone:
    """Shapes ViT-XS: 4 blocks of width 32 (2 heads), patch 4, 32 px."""
    return _shapes_vit("xs", weights, pretrained, img_size)


def shapes_vit_m(
    weights: str | Path | None = None, pretrained: bool = True, img_size: int = IMAGE_SIZE
) -> Backbone:
    """Shapes ViT-M: 6 blocks of width 96 (3 heads), patch 4, 32 px."""
    return _shapes_vit("m", weights, pretrained, img_size)

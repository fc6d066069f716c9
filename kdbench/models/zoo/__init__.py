"""The embedded suite's student zoo: small students of several families at the Shapes input
size (32 px), each a :class:`~kdbench.models.backbone.Backbone` with the whole feature API
(pooled embedding, a 2-D final map, intermediate layers).

One module per family: :mod:`.vit` (the Shapes ViT family at more sizes), :mod:`.mobilevit`
(a MobileViT-style hybrid from timm's blocks), :mod:`.resnet12` (the few-shot literature's
ResNet-12 at reduced width), :mod:`.thriftynet` (one convolution applied recursively). The
students are registered in :mod:`kdbench.builtins`; ``docs/models.md`` tabulates their
parameters and FLOPs.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from kdbench.models.backbone import Backbone, Preprocess


def zoo_backbone(
    model: nn.Module,
    name: str,
    weights: str | Path | None,
    pretrained: bool,
    img_size: int,
) -> Backbone:
    """``model`` as the student ``name`` taking ``img_size`` px inputs, with the Shapes world
    weights file ``<name>.safetensors`` (or ``weights``) loaded unless ``pretrained=False``
    and no ``weights`` are given (random initialisation)."""
    from kdbench.world.models import load_world_weights

    backbone = Backbone(model, name, Preprocess(input_size=(img_size, img_size)))
    if not pretrained and weights is None:
        return backbone
    return load_world_weights(backbone, name, weights, f"the {name} student")

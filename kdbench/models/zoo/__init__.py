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

from collections.abc import Sequence
from pathlib import Path

import torch
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


class MapStudent(nn.Module):
    """timm's feature API for a convolutional student built of a sequence of units (blocks,
    recurrent steps) whose outputs are (B, C, h, w) maps. A subclass gives ``units`` (what
    ``Backbone.num_layers`` counts, as ``stages`` or ``blocks``), ``run(x, take)`` (the final
    map and the outputs of the units whose 0-based index is in ``take``) and
    ``forward_head`` (the pooling)."""

    def units(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    def run(self, x: torch.Tensor, take: set[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, set())[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """The final map and the outputs of the units in ``indices`` (timm's convention)."""
        from timm.models._features import feature_take_indices

        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', not {output_fmt!r}")
        take, _ = feature_take_indices(len(self.units()), indices)
        final, intermediates = self.run(x, set(take))
        return intermediates if intermediates_only else (final, intermediates)

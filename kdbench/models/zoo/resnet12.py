"""ResNet-12 as the few-shot literature uses it (TADAM, MetaOptNet, FEAT and most
episodic-training papers since), at reduced width for 32 px Shapes images.

Four residual blocks, each three 3x3 convolutions with BatchNorm and leaky ReLU (slope 0.1),
a 1x1 convolution + BatchNorm shortcut, and 2x2 max-pooling after the block. The literature's
widths are 64-160-320-640 at 84 px; here they are 16-32-64-128 (``widths``), so that the
student stays below the Shapes teacher in parameters and FLOPs. The literature pools after
all four blocks (84 px -> 5x5); at 32 px that would leave 2x2, so here the last block does
not pool and the final map is 4x4 (segmentation reads it). DropBlock, which some papers add
for regularisation, is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kdbench.models.backbone import Backbone
from kdbench.models.zoo import MapStudent, zoo_backbone
from kdbench.world.models import IMAGE_SIZE

WIDTHS = (16, 32, 64, 128)
SLOPE = 0.1


def _conv_bn(in_chs: int, out_chs: int, kernel: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_chs, out_chs, kernel, padding=kernel // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_chs)]


class ResBlock12(nn.Module):
    """Three 3x3 conv-BN (leaky ReLU between them), a 1x1 conv-BN shortcut, leaky ReLU
    after the sum, then 2x2 max-pooling when ``pool``."""

    def __init__(self, in_chs: int, out_chs: int, pool: bool = True) -> None:
        super().__init__()
        act = lambda: nn.LeakyReLU(SLOPE)  # noqa: E731
        self.body = nn.Sequential(
            *_conv_bn(in_chs, out_chs, 3), act(),
            *_conv_bn(out_chs, out_chs, 3), act(),
            *_conv_bn(out_chs, out_chs, 3),
        )  # fmt: skip
        self.shortcut = nn.Sequential(*_conv_bn(in_chs, out_chs, 1))
        self.act = act()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.body(x) + self.shortcut(x)))


class ResNet12(MapStudent):
    """ResNet-12 feature extractor: ``stages`` are the four residual blocks; the embedding
    is the global average of the last block's map."""

    def __init__(self, widths: Sequence[int] = WIDTHS, in_chans: int = 3) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"ResNet-12 has four blocks; got widths {tuple(widths)}")
        chs = [in_chans, *widths]
        self.stages = nn.Sequential(*(ResBlock12(chs[i], chs[i + 1], pool=i < 3) for i in range(4)))
        self.num_features = int(widths[-1])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, a=SLOPE, mode="fan_out", nonlinearity="leaky_relu"
                )

    def units(self) -> Sequence[nn.Module]:
        return self.stages

    def run(self, x: torch.Tensor, take: set[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        intermediates = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in take:
                intermediates.append(x)
        return x, intermediates

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x.mean((2, 3))


def shapes_resnet12(
    weights: str | Path | None = None, pretrained: bool = True, img_size: int = IMAGE_SIZE
) -> Backbone:
    """ResNet-12 at widths 16-32-64-128, no pooling after the last block (4x4 map at 32 px)."""
    return zoo_backbone(ResNet12(), "shapes-resnet12", weights, pretrained, img_size)

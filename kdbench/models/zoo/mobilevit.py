"""A MobileViT-style hybrid at Shapes scale, built from timm's MobileViT blocks (Mehta and
Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision
Transformer", ICLR 2022) through timm's ``ByobNet``, as ``timm:mobilevit_xxs`` is.

``mobilevit_xxs`` takes 256 px to a 8x8 map through five stride-2 steps. At 32 px the same
plan would end at 1x1, so this one keeps the stride-2 stem and a single stride-2 stage: the
MobileViT blocks run on an 8x8 map (2x2 patches, so 16 tokens per attention sequence) and
the final map is 8x8, which segmentation needs. Widths are reduced from ``mobilevit_xxs``'s
(16-24-48-64-80, transformer widths 64-80-96, final 320) to 16-24-32-48 with transformer
widths 48 and 64 and a final 1x1 convolution to 192.
"""

from __future__ import annotations

from pathlib import Path

from kdbench.models.backbone import Backbone
from kdbench.models.zoo import zoo_backbone
from kdbench.world.models import IMAGE_SIZE


def _inverted_residual(depth: int, chs: int, stride: int):
    """MobileNetV2's inverted residual: a depthwise bottleneck expanded 2x, linear output."""
    from timm.models.byobnet import ByoBlockCfg

    return ByoBlockCfg(
        type="bottle", d=depth, c=chs, s=stride, gs=1, br=2.0,
        block_kwargs=dict(bottle_in=True, linear_out=True),
    )  # fmt: skip


def _mobilevit_stage(chs: int, stride: int, transformer_dim: int, transformer_depth: int):
    """An inverted residual, then a MobileViT block (local 3x3 conv, a transformer over
    2x2 patches unfolded into tokens, fusion with the input)."""
    from timm.models.byobnet import ByoBlockCfg

    block = ByoBlockCfg(
        type="mobilevit", d=1, c=chs, s=1,
        block_kwargs=dict(
            transformer_dim=transformer_dim, transformer_depth=transformer_depth, patch_size=2
        ),
    )  # fmt: skip
    return (_inverted_residual(1, chs, stride), block)


def mobilevit_cfg():
    """The ``ByoModelCfg`` of the Shapes MobileViT (32 px in, 8x8 map out)."""
    import timm.models.mobilevit  # noqa: F401  (registers the 'mobilevit' block type)
    from timm.models.byobnet import ByoModelCfg

    return ByoModelCfg(
        blocks=(
            _inverted_residual(1, 16, 1),  # 16x16
            _inverted_residual(2, 24, 2),  # 8x8
            _mobilevit_stage(32, 1, transformer_dim=48, transformer_depth=2),
            _mobilevit_stage(48, 1, transformer_dim=64, transformer_depth=2),
        ),
        stem_chs=16,
        stem_type="3x3",
        stem_pool="",
        downsample="",
        act_layer="silu",
        num_features=192,
    )


def _stage_layers(model, cfg):
    """List the four stages as the intermediate layers (timm's ``ByobNet`` lists only the
    output at each new stride, two here), the last through the final 1x1 convolution."""
    reduction, info = 2, []
    for i, stage in enumerate(cfg.blocks):
        blocks = stage if isinstance(stage, tuple) else (stage,)
        reduction *= blocks[0].s
        info.append(dict(num_chs=blocks[-1].c, reduction=reduction, module=f"stages.{i}"))
    info[-1].update(num_chs=model.num_features, module="final_conv")
    model.feature_info = [dict(f, stage=i + 1) for i, f in enumerate(info)]
    model.stage_ends = [f["stage"] for f in model.feature_info]  # read by forward_intermediates
    return model


def shapes_mobilevit(
    weights: str | Path | None = None, pretrained: bool = True, img_size: int = IMAGE_SIZE
) -> Backbone:
    """MobileViT-style hybrid: stride-2 stem, inverted residuals, two MobileViT blocks on an
    8x8 map (transformer widths 48 and 64, depth 2 each), 192 features."""
    from timm.models.byobnet import ByobNet

    cfg = mobilevit_cfg()
    model = _stage_layers(ByobNet(cfg, num_classes=0), cfg)
    return zoo_backbone(model, "shapes-mobilevit", weights, pretrained, img_size)

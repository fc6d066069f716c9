"""Host memory of the token maps the segmentation protocol keeps per image, measured.

The standard suite scores frozen heads on DINOv2 ViT-B/14 token maps at 1022 px (a 73 x 73
grid). The ``linear`` adapter keeps the final tokens, ``multilayer`` the last four layers
concatenated; both are stored in float16 for the support and evaluation images. This
script runs the real token path (:func:`kdbench.models.segmenter.token_features`, the
adapter registry's layers) on a few images written in the Cityscapes fixture layout and
prints the bytes held per image and the process's peak resident memory. Random weights:
the sizes do not depend on weight values, and nothing downloads.

    python benchmarks/segmentation_token_memory.py [--images 2] [--size 1022]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from kdbench.data.cityscapes import load_cityscapes
    from kdbench.models.backbone import timm_backbone
    from kdbench.models.segmenter import token_features
    from kdbench.plugins import get_registry
    from tests.data.fixtures import make_cityscapes

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=1022)
    parser.add_argument("--model", default="vit_base_patch14_dinov2.lvd142m")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as folder:
        root = make_cityscapes(Path(folder))
        split = load_cityscapes(root, "val")
        count = min(args.images, len(split))
        pixels = [torch.from_numpy(split.load(i)[0]).permute(2, 0, 1) for i in range(count)]
    # resized to the protocol's square image size, as the segmentation protocol does
    images = torch.stack(
        [
            F.interpolate(p[None].float(), size=(args.size, args.size), mode="bilinear")[0]
            for p in pixels
        ]
    ).to(torch.uint8)
    backbone = timm_backbone(args.model, pretrained=False, img_size=args.size).eval()
    registry = get_registry()
    print(f"{args.model} at {args.size} px, grid {backbone.grid_size}, {count} image(s)")
    for name in ("linear", "multilayer"):
        adapter = registry.get("adapters", name).load()()
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tokens = token_features(backbone, images, adapter.layers or (), device="cpu", batch_size=1)
        per_image = tokens[0].numel() * tokens.element_size()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"{name:>10}: tokens {tuple(tokens.shape[1:])} {tokens.dtype}, "
            f"{per_image / 1e6:.2f} MB per image held ({per_image / 2**20:.2f} MiB); "
            f"peak RSS {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f} MiB), "
            f"{time.perf_counter() - started:.1f} s"
        )


if __name__ == "__main__":
    main()

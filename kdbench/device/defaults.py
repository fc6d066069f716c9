"""The device protocol's defaults, where both the protocol and ``kdbench device`` read them
(the measuring code must not import the protocol layer above it)."""

from __future__ import annotations

from typing import Any

from kdbench.device.precision import PRECISIONS


def default_device_config(suite: str, smoke: bool) -> dict[str, Any]:
    """The device protocol's config for ``suite``; ``smoke`` shrinks it to seconds."""
    if suite == "embedded":
        config: dict[str, Any] = {
            "teacher": {"name": "shapes-teacher", "options": {}},
            "student": {"name": "shapes-student", "options": {}},
            "img_size": 32,
            "throughput": {
                "batch_size": 64,
                "warmup": 3,
                "min_batches": 10,
                "min_seconds": 1.0,
            },
        }
    else:
        config = {
            "teacher": {
                "name": "timm:vit_base_patch14_dinov2.lvd142m",
                "options": {"pretrained": False},
            },
            "student": {
                "name": "timm:vit_small_patch14_dinov2.lvd142m",
                "options": {"pretrained": False},
            },
            "img_size": 224,
            "throughput": {
                "batch_size": 64,
                "warmup": 3,
                "min_batches": 10,
                "min_seconds": 10.0,
            },
        }
    config.update(
        random_if_missing=True,
        precisions=list(PRECISIONS),
        threads=None,
        pool_images=64,
        latency={"warmup": 10, "min_queries": 1000, "min_seconds": 10.0},
        sensor="auto",
        idle_seconds=2.0,
    )
    if smoke:
        config["latency"] = {"warmup": 10, "min_queries": 64, "min_seconds": 0.0}
        config["throughput"] = {
            "batch_size": 8,
            "warmup": 1,
            "min_batches": 2,
            "min_seconds": 0.0,
        }
        config["idle_seconds"] = 0.2
    return config

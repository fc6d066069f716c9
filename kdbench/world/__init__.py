"""The embedded suite's procedurally rendered Shapes world.

Names are imported on first use, so ``kdbench --help`` does not pay for numpy and torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Taxonomy": "kdbench.world.taxonomy",
    "WORLD_VERSION": "kdbench.world.world",
    "LabelledImages": "kdbench.world.world",
    "ShapesWorld": "kdbench.world.world",
}

__all__ = ["WORLD_VERSION", "LabelledImages", "ShapesWorld", "Taxonomy"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kdbench.world' has no attribute {name!r}")

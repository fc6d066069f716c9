"""The embedded suite's procedurally rendered Shapes world."""

from kdbench.world.taxonomy import Taxonomy
from kdbench.world.world import WORLD_VERSION, LabelledImages, ShapesWorld

__all__ = ["WORLD_VERSION", "LabelledImages", "ShapesWorld", "Taxonomy"]

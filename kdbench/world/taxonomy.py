"""The Shapes world's classes, their names and the taxonomy over them.

A class is a colour x shape x pattern combination, named in words ("striped red star").
The taxonomy has four levels below the root, coarse to fine:

    tone (warm / cool) -> colour -> shape -> pattern (the class itself)

Colour sits at the top because it is the most salient cue at 32 px; classes that share a
colour and a shape and differ only in pattern are the nearest relatives, the hardest to
tell apart, like species of one genus. The lowest common ancestor (LCA) of two classes is
at depth 0 (root: different tone), 1 (same tone), 2 (same colour) or 3 (same colour and
shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: colour name -> (tone, hue in degrees). Neighbouring hues within a tone are confusable.
COLOURS: dict[str, tuple[str, float]] = {
    "red": ("warm", 0.0),
    "orange": ("warm", 28.0),
    "yellow": ("warm", 55.0),
    "pink": ("warm", 330.0),
    "green": ("cool", 120.0),
    "cyan": ("cool", 185.0),
    "blue": ("cool", 225.0),
    "purple": ("cool", 275.0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "hexagon", "star", "cross")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered", "hollow")
TONES: tuple[str, ...] = ("warm", "cool")
LEVELS: tuple[str, ...] = ("tone", "colour", "shape", "pattern")
"""Level names; an LCA at depth ``d`` is a node of level ``LEVELS[d - 1]`` (0 is the root)."""


@dataclass(frozen=True)
class ShapeClass:
    """One class of the world."""

    index: int
    colour: str
    shape: str
    pattern: str

    @property
    def tone(self) -> str:
        return COLOURS[self.colour][0]

    @property
    def name(self) -> str:
        return f"{self.pattern} {self.colour} {self.shape}"

    @property
    def lineage(self) -> tuple[str, str, str, str]:
        """The class's path in the taxonomy, one node per level (coarse to fine)."""
        return (
            self.tone,
            self.colour,
            f"{self.colour} {self.shape}",
            self.name,
        )


class Taxonomy:
    """All classes in a fixed order, and distances between them."""

    def __init__(self) -> None:
        self.classes: tuple[ShapeClass, ...] = tuple(
            ShapeClass(i, colour, shape, pattern)
            for i, (colour, shape, pattern) in enumerate(
                (c, s, p) for c in COLOURS for s in SHAPES for p in PATTERNS
            )
        )
        self.levels = LEVELS

    def __len__(self) -> int:
        return len(self.classes)

    def by_name(self, name: str) -> ShapeClass:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(f"no Shapes class named {name!r} (names look like 'striped red star')")

    @cached_property
    def lca_depth_matrix(self) -> np.ndarray:
        """``[i, j]`` = depth of the lowest common ancestor of classes i and j (4 if i == j)."""
        lineages = np.array([c.lineage for c in self.classes], dtype=object)
        n = len(self.classes)
        depth = np.zeros((n, n), dtype=np.int8)
        same = np.ones((n, n), dtype=bool)
        for level in range(len(LEVELS)):
            column = lineages[:, level]
            same &= column[:, None] == column[None, :]
            depth += same
        return depth

    def lca_depth(self, a: int, b: int) -> int:
        return int(self.lca_depth_matrix[a, b])

    def attribute_codes(self) -> np.ndarray:
        """Per class: (colour index, shape index, pattern index)."""
        colours = list(COLOURS)
        return np.array(
            [
                (colours.index(c.colour), SHAPES.index(c.shape), PATTERNS.index(c.pattern))
                for c in self.classes
            ],
            dtype=np.int64,
        )

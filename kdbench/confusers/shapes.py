"""The Shapes world's frozen confusers: attribute neighbours, made by a rule and committed.

For a target class (colour, shape, pattern), every other class gets a confusion cost, the sum
over the attributes it changes:

* pattern changed: 1;
* colour changed: 1 + (hue distance in degrees) / 180, so neighbouring hues come first;
* shape changed: 1.25.

The ``k`` cheapest classes (ties by class index) are the target's confusers: the same object
in another pattern, then the nearest hues and other shapes; what a language model asked "what
could be confused with a striped red star?" tends to answer. The file is regenerated with::

    python -m kdbench.confusers.shapes            # writes the shipped file
    python -m kdbench.confusers.shapes OUT.json   # or elsewhere

and a test checks that the committed file equals this function's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from kdbench.confusers import SHIPPED, write_confuser_file
from kdbench.world.taxonomy import COLOURS, Taxonomy
from kdbench.world.world import WORLD_VERSION

K = 10
NAME = "shapes-attribute-neighbours"
VERSION = "1"
PATTERN_COST = 1.0
SHAPE_COST = 1.25


def confusion_costs(taxonomy: Taxonomy | None = None) -> np.ndarray:
    """(classes x classes) cost of mistaking one class for another (``inf`` on the diagonal)."""
    taxonomy = taxonomy or Taxonomy()
    codes = taxonomy.attribute_codes()
    hues = np.array([COLOURS[c][1] for c in COLOURS])[codes[:, 0]]
    gap = np.abs(hues[:, None] - hues[None, :]) % 360
    hue_distance = np.minimum(gap, 360 - gap)
    colour = codes[:, 0][:, None] != codes[:, 0][None, :]
    shape = codes[:, 1][:, None] != codes[:, 1][None, :]
    pattern = codes[:, 2][:, None] != codes[:, 2][None, :]
    cost = pattern * PATTERN_COST + colour * (1 + hue_distance / 180) + shape * SHAPE_COST
    np.fill_diagonal(cost, np.inf)
    return cost


def attribute_neighbours(k: int = K) -> dict[str, list[str]]:
    """Every Shapes class name -> its ``k`` attribute neighbours, most confusable first."""
    taxonomy = Taxonomy()
    cost = confusion_costs(taxonomy)
    names = [c.name for c in taxonomy.classes]
    out = {}
    for i, name in enumerate(names):
        order = np.lexsort((np.arange(len(names)), cost[i]))[:k]
        out[name] = [names[j] for j in order]
    return out


def shipped_path() -> Path:
    return SHIPPED / f"shapes-v{WORLD_VERSION}.json"


def write(path: str | Path | None = None, k: int = K) -> Path:
    """Write the frozen file (default: the one shipped in the package)."""
    return write_confuser_file(
        path or shipped_path(),
        attribute_neighbours(k),
        name=NAME,
        version=VERSION,
        dataset="shapes",
        dataset_version=WORLD_VERSION,
        k=k,
        made_by="kdbench.confusers.shapes.attribute_neighbours (attribute-neighbour costs)",
    )


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else None))

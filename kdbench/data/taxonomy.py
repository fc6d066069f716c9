"""Taxonomy distances between classes: at which rank two classes' lineages part ways.

Used to pick negatives whose lowest common ancestor with a target sits exactly at a given
rank (iNaturalist one-class tasks): a species' negatives "at genus" share its genus but are
other species, those "at kingdom" share only the kingdom.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from kdbench.data.base import DatasetError


class TaxonomyIndex:
    """Lineages (coarse to fine, one tuple per class) indexed by every ancestor."""

    def __init__(self, lineages: Sequence[tuple[str, ...]], levels: Sequence[str]) -> None:
        self.levels = tuple(levels)
        self.lineages = [tuple(lineage) for lineage in lineages]
        for label, lineage in enumerate(self.lineages):
            if len(lineage) != len(self.levels):
                raise DatasetError(
                    f"class {label} has a lineage of {len(lineage)} ranks {lineage}; "
                    f"expected {len(self.levels)}: {', '.join(self.levels)}"
                )
        # members[depth][lineage prefix of depth+1 ranks] -> classes below that ancestor;
        # prefixes (not names) keep homonyms in different kingdoms apart.
        self._members: list[dict[tuple[str, ...], list[int]]] = [
            defaultdict(list) for _ in self.levels
        ]
        for label, lineage in enumerate(self.lineages):
            for depth in range(len(self.levels)):
                self._members[depth][lineage[: depth + 1]].append(label)

    def common_rank(self, a: int, b: int) -> str | None:
        """The rank of the lowest common ancestor of classes ``a`` and ``b`` (None when they
        differ at the top rank; the last rank when their lineages are identical)."""
        rank = None
        for level, x, y in zip(self.levels, self.lineages[a], self.lineages[b], strict=True):
            if x != y:
                break
            rank = level
        return rank

    def diverging_at(self, target: int, rank: str) -> np.ndarray:
        """Classes whose lowest common ancestor with ``target`` is exactly at ``rank``: same
        ancestor at ``rank``, different one at the next rank down (sorted labels)."""
        if rank not in self.levels:
            raise DatasetError(f"unknown rank {rank!r}; ranks: {', '.join(self.levels)}")
        depth = self.levels.index(rank)
        lineage = self.lineages[target]
        same = set(self._members[depth][lineage[: depth + 1]])
        if depth + 1 < len(self.levels):
            same -= set(self._members[depth + 1][lineage[: depth + 2]])
        else:
            same.discard(target)
        return np.asarray(sorted(same), dtype=np.int64)

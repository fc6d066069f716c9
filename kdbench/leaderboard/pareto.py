"""The Pareto frontier of (cost, score) points: the ones no other point beats on both."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]], *, higher_is_better: bool) -> list[int]:
    """Indices (ascending) of the points that no other point dominates.

    A point is dominated when another costs no more and scores no worse, and is strictly
    better in one of the two. Lower cost is always better; ``higher_is_better`` is the
    score's direction. Identical points are all kept.
    """
    order = sorted(
        range(len(points)),
        key=lambda i: (points[i][0], -points[i][1] if higher_is_better else points[i][1]),
    )
    front: list[int] = []
    best: tuple[float, float] | None = None  # (cost, signed score) of the last frontier point
    for i in order:
        cost, score = points[i]
        signed = score if higher_is_better else -score
        if best is None or signed > best[1] or (cost, signed) == best:
            front.append(i)
            best = (cost, signed)
    return sorted(front)

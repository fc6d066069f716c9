"""Accuracy-versus-cost fronts: each score table's headline against what its rows cost.

For a score table, one figure per cost axis: parameters and FLOPs once (they do not depend
on the device), latency p50 and energy once per device fingerprint of the suite. Each
(method, student) row is a point at its student's cost, labelled ``method · student``; the
Pareto front (no other ranked row both costs less and scores better) is drawn as a line.
Reference rows and preliminary rows (fewer seeds than the seed policy) are drawn for context
and never on the front: a one-seed row's CI says nothing about how it varies between seeds.
A table scored at a precision (``kdbench run --precision``) places its rows at the cost of
the quantised student, and its points and titles carry the precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from markupsafe import Markup

from kdbench.leaderboard.aggregate import Row, Table
from kdbench.leaderboard.costs import COST_AXES, CostAxis, DeviceCosts
from kdbench.leaderboard.devices import DEVICE_PROTOCOL, short_id
from kdbench.leaderboard.plots import Point, frontier, scatter_svg


@dataclass(frozen=True)
class FrontPoint:
    """A row on a figure: its cost, its score and whether it is on the front."""

    row: Row
    cost: float
    score: float
    on_front: bool


@dataclass(frozen=True)
class Front:
    """One figure of a score table: the headline against one cost axis (on one device for
    latency and energy), as an SVG; or a note saying why no row could be placed."""

    axis: CostAxis
    device: str | None
    title: str
    points: tuple[FrontPoint, ...]
    summary: str | None = None  # the device's summary line
    svg: Markup | None = None
    note: str | None = None

    @property
    def members(self) -> list[FrontPoint]:
        """The points on the front, cheapest first."""
        on = [p for p in self.points if p.on_front]
        return sorted(on, key=lambda p: (p.cost, -p.score, p.row.label))


def joins_device_records(table: Table, costs: DeviceCosts) -> bool:
    """Whether any row of a score table has its backbone measured by a device record."""
    if table.sort_column is None or table.protocol == DEVICE_PROTOCOL:
        return False
    subjects = {row.subject for row in table.rows if row.subject is not None}
    return bool(subjects & costs.subjects(table.suite))


def front_points(
    table: Table, costs: DeviceCosts, axis: CostAxis, device: str | None
) -> list[FrontPoint]:
    """The rows of ``table`` with a headline score and a known cost on ``axis`` (on
    ``device``), each marked on or off the front, in table order."""
    column = table.sort_column
    if column is None:
        return []
    placed: list[tuple[Row, float, float]] = []
    for row in table.rows:
        score = row.value(table.sort_metric)
        cost = costs.cost(table.suite, device, row, axis, table.precision)
        if score is not None and cost is not None:
            placed.append((row, cost, score))
    points = [
        Point(cost, score, row_mark(table, row), row.reference, preliminary=row.preliminary)
        for row, cost, score in placed
    ]
    on_front = set(frontier(points, higher_is_better=column.higher_is_better))
    return [
        FrontPoint(row, cost, score, i in on_front) for i, (row, cost, score) in enumerate(placed)
    ]


def row_mark(table: Table, row: Row) -> str:
    """A point's label: ``method · student``, and the precision on a quantised table's
    points (so a quantised point is never read as the fp32 student's)."""
    return f"{row.label} [{table.precision}]" if table.quantised else row.label


def table_fronts(table: Table, costs: DeviceCosts, href_of: Mapping[str, str]) -> list[Front]:
    """The figures of a score table: parameters and FLOPs, then latency and energy per
    device; empty when no device record measured a backbone of the table.

    ``href_of`` maps a method name to the link its points carry.
    """
    column = table.sort_column
    if column is None or not joins_device_records(table, costs):
        return []
    unit = f" ({column.unit})" if column.unit else ""
    y_label = f"{column.name}{unit}"
    scopes: list[tuple[CostAxis, str | None]] = [(a, None) for a in COST_AXES if not a.per_device]
    for device in costs.suite_devices(table.suite):
        scopes += [(a, device) for a in COST_AXES if a.per_device]
    fronts = []
    for axis, device in scopes:
        summary = costs.devices.get(device) if device is not None else None
        where = f" on {summary} [{short_id(device)}]" if device is not None else ""
        at = f" at {table.precision_label}" if table.quantised else ""
        title = f"{y_label}{at} vs {axis.label}{where}"
        points = front_points(table, costs, axis, device)
        if not points:
            reasons = costs.missing_reasons(table.suite, device, axis, table.precision)
            why = f": {'; '.join(reasons)}" if reasons else ""
            what = axis.label.split(" (")[0]
            note = f"No {what} measured for these backbones{where}{why}."
            fronts.append(Front(axis, device, title, (), summary, note=note))
            continue
        svg = scatter_svg(
            [
                Point(
                    p.cost,
                    p.score,
                    row_mark(table, p.row),
                    p.row.reference,
                    href_of.get(p.row.method),
                    preliminary=p.row.preliminary,
                )
                for p in points
            ],
            title=title,
            x_label=axis.label,
            y_label=y_label,
            higher_is_better=column.higher_is_better,
        )
        fronts.append(Front(axis, device, title, tuple(points), summary, svg=svg))
    return fronts

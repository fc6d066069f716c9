"""What each backbone costs on each device, joined to the rows of the score tables.

A row joins the device records of its suite that measured the same backbone: the record's
``components["subject"]`` with the same name and version. Latency and energy are plotted per
device fingerprint, never across devices; parameters do not depend on the device and get one
plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup

from kdbench.leaderboard.aggregate import Row, Table, table_device
from kdbench.leaderboard.devices import (
    DEVICE_PROTOCOL,
    fingerprint_summary,
    short_id,
)
from kdbench.leaderboard.intake import RecordFile
from kdbench.leaderboard.plots import Point, scatter_svg


@dataclass(frozen=True)
class CostAxis:
    """A cost metric of device records that scores are plotted against."""

    metric: str
    label: str
    per_device: bool


COST_AXES = (
    CostAxis("latency_p50_ms", "latency p50 (ms)", per_device=True),
    CostAxis("energy_mj_per_image", "energy (mJ/image)", per_device=True),
    CostAxis("params_m", "parameters (M)", per_device=False),
)

Subject = tuple[str, str]


@dataclass
class DeviceCosts:
    """Mean cost metrics per (suite, device, subject), from the ranked device records."""

    values: dict[tuple[str, str, Subject, str], list[float]] = field(default_factory=dict)
    reasons: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)  # fingerprint id -> summary

    def mean(self, suite: str, device: str, subject: Subject, metric: str) -> float | None:
        values = self.values.get((suite, device, subject, metric))
        return sum(values) / len(values) if values else None

    def suite_devices(self, suite: str) -> list[str]:
        return sorted({d for (s, d, _, _) in self.values if s == suite})

    def subjects(self, suite: str) -> set[Subject]:
        return {subject for (s, _, subject, _) in self.values if s == suite}


def device_costs(files: Sequence[RecordFile]) -> DeviceCosts:
    """Collect the cost metrics of every ranked device record that names its subject."""
    costs = DeviceCosts()
    wanted = {axis.metric for axis in COST_AXES}
    for file in sorted(files, key=lambda f: f.path):
        record = file.record
        if record is None or record.protocol.name != DEVICE_PROTOCOL:
            continue
        subject = record.components.get("subject")
        if subject is None or record.device_fingerprint is None:
            continue
        device = table_device(record)
        costs.devices[device] = fingerprint_summary(record.device_fingerprint)
        key = (subject.name, subject.version)
        for metric in record.metrics:
            if metric.name not in wanted:
                continue
            slot = costs.values.setdefault((record.suite, device, key, metric.name), [])
            if metric.value is not None:
                slot.append(metric.value)
            else:
                reasons = costs.reasons.setdefault((record.suite, device, metric.name), set())
                reasons.add(metric.reason or "not measured")
    return costs


@dataclass(frozen=True)
class Plot:
    """One figure on a protocol page: an SVG, or a note saying why there is none."""

    title: str
    device: str | None
    svg: Markup | None = None
    note: str | None = None


def _points(
    table: Table, rows: Sequence[Row], cost_of: Mapping[Subject, float], href_of: dict[str, str]
) -> list[Point]:
    points = []
    for row in rows:
        score = row.value(table.sort_metric)
        if score is None or row.subject is None or row.subject not in cost_of:
            continue
        points.append(
            Point(cost_of[row.subject], score, row.method, row.reference, href_of.get(row.method))
        )
    return points


def table_plots(table: Table, costs: DeviceCosts, href_of: dict[str, str]) -> list[Plot]:
    """The score-vs-cost plots of a score table; empty when no device record joins it.

    ``href_of`` maps a method name to the link its points should carry.
    """
    column = table.sort_column
    if column is None or table.protocol == DEVICE_PROTOCOL:
        return []
    subjects = {row.subject for row in table.rows if row.subject is not None}
    if not subjects & costs.subjects(table.suite):
        return []
    unit = f" ({column.unit})" if column.unit else ""
    y_label = f"{column.name}{unit}"
    plots = []
    for axis in COST_AXES:
        devices = costs.suite_devices(table.suite) if axis.per_device else ["*"]
        for device in devices:
            scope = [device] if axis.per_device else costs.suite_devices(table.suite)
            cost_of: dict[Subject, float] = {}
            for subject in sorted(subjects):
                values = [
                    v
                    for d in scope
                    for v in costs.values.get((table.suite, d, subject, axis.metric), [])
                ]
                if values:
                    cost_of[subject] = sum(values) / len(values)
            summary = costs.devices.get(device) if axis.per_device else None
            where = f" on {summary} [{short_id(device)}]" if summary else ""
            title = f"{y_label} vs {axis.label}{where}"
            points = _points(table, table.rows, cost_of, href_of)
            if points:
                svg = scatter_svg(
                    points,
                    title=title,
                    x_label=axis.label,
                    y_label=y_label,
                    higher_is_better=column.higher_is_better,
                )
                plots.append(Plot(title, device if axis.per_device else None, svg=svg))
            else:
                reasons = sorted(
                    r for d in scope for r in costs.reasons.get((table.suite, d, axis.metric), ())
                )
                why = f": {'; '.join(reasons)}" if reasons else ""
                plots.append(
                    Plot(
                        title,
                        device if axis.per_device else None,
                        note=f"No {axis.label.split(' (')[0]} measured for these backbones"
                        f"{where}{why}.",
                    )
                )
    return plots

"""What the pages show, as objects the templates read: a table with its fronts, budgets and
chart (:class:`TableView`), its fronts grouped by device, and a method's results."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from markupsafe import Markup

from kdbench.leaderboard.aggregate import Row, Table
from kdbench.leaderboard.baselines import is_baseline
from kdbench.leaderboard.budgets import BudgetView
from kdbench.leaderboard.catalog import MetricInfo
from kdbench.leaderboard.devices import short_id
from kdbench.leaderboard.fronts import Front
from kdbench.leaderboard.intake import Unranked
from kdbench.leaderboard.links import anchor
from kdbench.results import ComponentRef, Record

#: Charts of more rows than this start folded (a <details> the reader opens; a printed page
#: opens them).
FOLD_CHART_ROWS = 40


@dataclass
class DeviceGroup:
    """What a fronts page shows for one device of a table (``device`` None: the figures
    that do not depend on the device): its figures and its budget view."""

    device: str | None
    summary: str | None
    anchor: str
    fronts: list[Front]
    budget: BudgetView | None = None


@dataclass
class TableView:
    """A table as the pages show it: the table plus its anchor, device, fronts and budgets."""

    table: Table
    anchor: str
    device_summary: str | None
    fronts: list[Front] = field(default_factory=list)
    variant: str | None = None
    """``dataset · teacher`` when the suite's protocol has tables on several datasets or
    teachers (the heading and the overview then say which table this is)."""
    budgets: list[BudgetView] = field(default_factory=list)
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    """What each metric column means (description, unit, direction)."""
    chart: Markup | None = None
    """The headline per row as a dot-and-whisker chart, with each seed."""

    @property
    def fold_chart(self) -> bool:
        return len(self.table.rows) > FOLD_CHART_ROWS

    @functools.cached_property
    def ranked_count(self) -> int:
        return sum(row.rank is not None for row in self.table.rows)

    @functools.cached_property
    def row_groups(self) -> list[tuple[bool, list[Row]]]:
        """``(preliminary, rows)``: the fully-seeded and reference rows, then (if any) the
        preliminary ones, each group its own table body so that sorting never mixes them."""
        full = [row for row in self.table.rows if not row.preliminary]
        preliminary = [row for row in self.table.rows if row.preliminary]
        return [(False, full)] + ([(True, preliminary)] if preliminary else [])

    @property
    def column_count(self) -> int:
        """Columns of the table: rank, method, student, (transfer set,) version, metrics,
        deltas, seeds, runs."""
        return 6 + bool(self.transfers) + len(self.table.columns) + len(self.delta_columns)

    @functools.cached_property
    def transfers(self) -> list[str]:
        """The transfer sets of the table's rows, sorted (what the Transfer set column and
        filter show); empty when the rows do not differ in it."""
        found = sorted({row.transfer for row in self.table.rows if row.transfer is not None})
        return found if len(found) > 1 else []

    @functools.cached_property
    def rows_by_method(self) -> dict[str, list[Row]]:
        """The table's rows of each method, in table order."""
        out: dict[str, list[Row]] = {}
        for row in self.table.rows:
            out.setdefault(row.method, []).append(row)
        return out

    def position(self, row: Row) -> int:
        """Where ``row`` is in the table (its rows keep the table's order on every chart)."""
        return self._positions[id(row)]

    @functools.cached_property
    def _positions(self) -> dict[int, int]:
        return {id(row): i for i, row in enumerate(self.table.rows)}

    @functools.cached_property
    def context_rows(self) -> list[Row]:
        """The reference and baseline rows, which a method page's chart shows beside the
        method's own."""
        return [row for row in self.table.rows if row.reference or is_baseline(row)]

    @functools.cached_property
    def headline_values(self) -> list[float]:
        """Every row's headline mean (the scale a method page's chart keeps)."""
        metric = self.table.sort_metric
        return [v for row in self.table.rows if (v := row.value(metric)) is not None]

    @property
    def groups(self) -> list[DeviceGroup]:
        """The fronts and budget views grouped by device, device-independent ones first."""
        budgets = {view.device: view for view in self.budgets}
        devices = list(dict.fromkeys(front.device for front in self.fronts))
        out = []
        for device in devices:
            summary = None
            if device is not None:
                summary = next((f.summary for f in self.fronts if f.device == device), None)
            suffix = f"-{short_id(device)}" if device is not None else "-any-device"
            out.append(
                DeviceGroup(
                    device=device,
                    summary=summary,
                    anchor=anchor(f"{self.anchor}{suffix}"),
                    fronts=[f for f in self.fronts if f.device == device],
                    budget=budgets.get(device) if device is not None else None,
                )
            )
        return out

    @property
    def students(self) -> list[str]:
        """The students of the table's rows, sorted (what the Student filter offers)."""
        return sorted({row.student for row in self.table.rows if row.student is not None})

    @functools.cached_property
    def delta_columns(self) -> list[str]:
        """The headline metrics shown as a difference from the baseline with the same
        student; none when the table has no baseline row."""
        if not any(is_baseline(row) for row in self.table.rows):
            return []
        return [c.name for c in self.table.columns if c.headline]


@dataclass
class MethodResult:
    """One row of a method's page: where the method stands in one table."""

    view: TableView
    row: Row
    page: str


@dataclass
class MethodPanel:
    """A method's rows in one table, as a chart beside its other tables' charts."""

    view: TableView
    page: str
    chart: Markup


@dataclass
class MethodInfo:
    """Everything a method page shows about one method name."""

    name: str
    latest: Record
    versions: list[tuple[str, str]]
    components: list[tuple[str, ComponentRef]]
    results: list[MethodResult]
    unranked: list[Unranked]
    reference: bool
    panels: list[MethodPanel] = field(default_factory=list)

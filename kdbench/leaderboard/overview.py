"""The overview: every (method, student) row of a suite against every table of that suite.

One line per (method, student) pair, one column per table (protocol version, and device
for device tables); a cell holds the row's headline score with its CI and rank. A pair with
no row in a table says why: the protocol refuses that method (not applicable, with the
protocol's own reason, :meth:`.catalog.Catalog.not_applicable`) or nobody ran it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kdbench.leaderboard.aggregate import Row, Table, student_key
from kdbench.leaderboard.catalog import Catalog

#: What a cell of the overview holds.
VALUE, NOT_APPLICABLE, NOT_RUN, NO_VALUE = "value", "not-applicable", "not-run", "no-value"


@dataclass
class OverviewCell:
    """One (row, table) cell: ``row`` is the table's row of the pair, when there is one."""

    status: str
    row: Row | None = None
    reason: str | None = None
    """Why there is no value: the protocol's refusal, or the record's reason."""
    note: str | None = None
    """The reason as a note shared by every method it applies to (names taken out)."""


@dataclass
class OverviewRow:
    """One (method, student) pair of a suite."""

    method: str
    student: str | None
    reference: bool
    self_reported: tuple[str, ...]
    cells: list[OverviewCell] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The pair as the student filter knows it."""
        return self.method + student_key(self.student)


@dataclass
class Overview:
    """The overview of one suite: its tables (columns) and its (method, student) rows."""

    suite: str
    tables: list[Table]
    rows: list[OverviewRow]


def _general(reason: str, method: str) -> str:
    """A refusal with the method's own name taken out, so one note serves every method."""
    return reason.replace(f"method {method!r}", "this method").replace(repr(method), "this method")


def _pick(rows: Sequence[Row]) -> Row:
    """Of several versions of a pair in one table, the best-ranked one (else the first)."""
    ranked = [r for r in rows if r.rank is not None]
    return min(ranked, key=lambda r: r.rank or 0) if ranked else rows[0]


def build_overview(suite: str, tables: Sequence[Table], catalog: Catalog) -> Overview:
    """The overview of ``suite`` from its ``tables`` (in the order the columns show)."""
    by_pair: list[dict[tuple[str, str | None], list[Row]]] = []
    pairs: dict[tuple[str, str | None], list[Row]] = {}
    for table in tables:
        index: dict[tuple[str, str | None], list[Row]] = {}
        for row in table.rows:
            if row.transfer_chosen:  # a run's variant: the overview shows the method's own
                continue
            index.setdefault((row.method, row.student), []).append(row)
            pairs.setdefault((row.method, row.student), []).append(row)
        by_pair.append(index)
    out = []
    for method, student in sorted(pairs, key=lambda p: (p[0], student_key(p[1]))):
        rows = pairs[(method, student)]
        line = OverviewRow(
            method=method,
            student=student,
            reference=any(r.reference for r in rows),
            self_reported=tuple(dict.fromkeys(why for r in rows for why in r.self_reported)),
        )
        for table, index in zip(tables, by_pair, strict=True):
            found = index.get((method, student))
            if found:
                row = _pick(found)
                cell = row.cells.get(table.sort_metric) if table.sort_metric else None
                if cell is not None and cell.mean is not None:
                    line.cells.append(OverviewCell(VALUE, row))
                else:
                    reason = cell.reason if cell is not None else "no headline metric"
                    line.cells.append(OverviewCell(NO_VALUE, row, reason, reason))
                continue
            refusal = catalog.not_applicable(method, table.protocol, student)
            if refusal is not None:
                cell = OverviewCell(NOT_APPLICABLE, None, refusal, _general(refusal, method))
            else:
                cell = OverviewCell(NOT_RUN)
            line.cells.append(cell)
        out.append(line)
    return Overview(suite, list(tables), out)

"""Leaderboard tables: ranked records aggregated over seeds with pandas.

One table per (suite, protocol, protocol version, dataset, teacher, precision) and, for
the device protocol, per device fingerprint, so versions, suites, datasets, teachers,
devices and precisions are never mixed. One row per (method, method version, student,
transfer set): the same method with two students, or distilled on two transfer sets, is
two rows. Each metric is the mean
over seeds, with a 95% CI across the seeds (Student's t, n-1) when there are two or more
(:func:`kdbench.metrics.stats.mean_ci95`). A one-seed cell has no interval: the record's own
CI (over its episodes, tasks or draws) is another quantity, kept apart in
``Cell.record_ci95`` so that the two kinds never share a column. Beside it, the paired
difference from the ``supervised`` row with the same student (:mod:`.baselines`).

Rows are sorted by the table's first headline metric. The seed policy: a row is ranked only
with at least :data:`~kdbench.leaderboard.acceptance.MIN_SEEDS` seeds; a row with fewer is
*preliminary*, listed after every fully-seeded row and never ranked. Reference rows are
kept in value order but get no rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kdbench.leaderboard.acceptance import MIN_SEEDS, self_reported
from kdbench.leaderboard.baselines import Delta, attach_deltas
from kdbench.leaderboard.datasets import dataset_label, teacher_label
from kdbench.leaderboard.intake import RecordFile, table_key
from kdbench.leaderboard.precisions import FP32, precision_label
from kdbench.leaderboard.students import row_label, row_student
from kdbench.leaderboard.transfers import row_transfer
from kdbench.metrics.stats import critical_value
from kdbench.results import Record

#: Columns that identify a table.
TABLE_KEYS = ("suite", "protocol", "version", "dataset", "teacher", "device", "precision")
#: Columns that identify a row within a table (``student`` as :func:`student_key` writes it,
#: ``transfer`` the row's transfer set or ``""``).
ROW_KEYS = (*TABLE_KEYS, "method", "method_version", "student", "transfer")


def student_key(student: str | None) -> str:
    """A row's student as a group key: ``""`` for none, else ``"@"`` + name (so a student
    named ``""`` is not the absence of one, and pandas never sees a missing key)."""
    return "" if student is None else "@" + student


@dataclass(frozen=True)
class Column:
    """A metric column: its name, unit and direction."""

    name: str
    unit: str | None
    higher_is_better: bool
    headline: bool


@dataclass(frozen=True)
class Cell:
    """A metric of a row: mean ± ci95 over ``count`` seeds, or None with the reason.

    ``exact``: every seed gave the same value (a count such as parameters or FLOPs), so the
    site shows the value without an interval.
    """

    mean: float | None
    ci95: float | None
    """95% CI half-width across seeds; None below two seeds."""
    count: int
    reason: str | None = None
    exact: bool = False
    record_ci95: float | None = None
    """With one seed, the record's own 95% CI (over episodes, tasks or draws)."""


@dataclass(frozen=True)
class Run:
    """One record behind a row."""

    seed: int
    run_id: str
    path: str


@dataclass
class Row:
    """One method (at one version) with one student in one table."""

    method: str
    method_version: str
    reference: bool
    cells: dict[str, Cell]
    runs: list[Run]
    subject: tuple[str, str] | None
    student: str | None = None
    """The registered name of the student the row scores; None for rows that score the
    teacher (or records that name no student)."""
    transfer: str | None = None
    """The transfer set the row's student was distilled on (:mod:`.transfers`); None where
    the protocol has none."""
    transfer_chosen: bool = False
    """The run chose the transfer set for every method (``--set distill.transfer``) instead
    of the method's recipe: the row is a variant of the method's own."""
    rank: int | None = None
    per_seed: dict[str, dict[int, float]] = field(default_factory=dict)
    """Each metric's value per seed (the mean if a seed has several records)."""
    deltas: dict[str, Delta] = field(default_factory=dict)
    """Per metric, the paired difference from the baseline row with the same student."""
    self_reported: tuple[str, ...] = ()
    """Why some of the row's records are self-reported (:mod:`.acceptance`); empty if none."""
    preliminary: bool = False
    """Fewer seeds than the seed policy asks for: shown after the ranked rows, not ranked."""

    @property
    def seed_count(self) -> int:
        return len({run.seed for run in self.runs})

    def value(self, metric: str | None) -> float | None:
        cell = self.cells.get(metric) if metric else None
        return cell.mean if cell else None

    @property
    def label(self) -> str:
        """``method · student``, as plots and budget views name the row."""
        return row_label(self.method, self.student)


@dataclass
class Table:
    """One leaderboard table: a suite, a protocol version, a dataset, a teacher and, for
    device records, a device."""

    suite: str
    protocol: str
    version: int
    device: str
    columns: list[Column]
    rows: list[Row]
    sort_metric: str | None
    config_hashes: list[str] = field(default_factory=list)
    dataset: str = ""
    """The records' :func:`~kdbench.leaderboard.datasets.dataset_key`."""
    teacher: str = ""
    """The records' :func:`~kdbench.leaderboard.datasets.teacher_key`."""
    precision: str = FP32
    """The precision the rows' students are scored at (:mod:`.precisions`)."""

    @property
    def quantised(self) -> bool:
        return self.precision != FP32

    @property
    def precision_label(self) -> str:
        return precision_label(self.precision)

    @property
    def dataset_label(self) -> str:
        return dataset_label(self.dataset) if self.dataset else ""

    @property
    def teacher_label(self) -> str:
        return teacher_label(self.teacher)

    @property
    def key(self) -> str:
        """``protocol@version``, as the site labels the table."""
        return f"{self.protocol}@{self.version}"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def sort_column(self) -> Column | None:
        return self.column(self.sort_metric) if self.sort_metric else None

    @property
    def leaders(self) -> list[Row]:
        return [r for r in self.rows if r.rank == 1]


def metric_frame(files: Sequence[RecordFile]) -> pd.DataFrame:
    """One row per (record, metric) of the given records, in file order."""
    cols: dict[str, list[object]] = {
        name: []
        for name in (
            *ROW_KEYS,
            "path",
            "position",
            "metric",
            "value",
            "ci95",
            "higher_is_better",
            "unit",
            "headline",
            "reason",
        )
    }
    for file in files:
        record = file.record
        assert record is not None
        keys = (
            *table_key(record),
            record.method.name,
            record.method.version,
            student_key(row_student(record)),
            row_transfer(record) or "",
        )
        for position, metric in enumerate(record.metrics):
            for name, value in zip(ROW_KEYS, keys, strict=True):
                cols[name].append(value)
            cols["path"].append(file.path)
            cols["position"].append(position)
            cols["metric"].append(metric.name)
            cols["value"].append(math.nan if metric.value is None else metric.value)
            cols["ci95"].append(math.nan if metric.ci95 is None else metric.ci95)
            cols["higher_is_better"].append(metric.higher_is_better)
            cols["unit"].append(metric.unit)
            cols["headline"].append(metric.headline)
            cols["reason"].append(metric.reason)
    frame = pd.DataFrame(cols)
    frame["value"] = frame["value"].astype("float64")
    frame["ci95"] = frame["ci95"].astype("float64")
    return frame


def seed_statistics(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, 95% CI and count over seeds for each (row, metric) of a :func:`metric_frame`."""
    frame = frame.assign(ci_of_value=frame["ci95"].where(frame["value"].notna()))
    grouped = frame.groupby([*ROW_KEYS, "metric"], sort=True)
    stats = grouped.agg(
        mean=("value", "mean"),
        std=("value", "std"),
        count=("value", "count"),
        single_ci=("ci_of_value", "first"),
    )
    counts = stats["count"].to_numpy()
    crit = np.array([critical_value(int(n)) if n >= 2 else math.nan for n in counts])
    seeds_ci = crit * stats["std"].to_numpy() / np.sqrt(np.maximum(counts, 1))
    stats["ci95"] = np.where(counts >= 2, seeds_ci, math.nan)
    stats["record_ci95"] = np.where(counts == 1, stats["single_ci"].to_numpy(), math.nan)
    stats["exact"] = (counts >= 2) & (stats["std"].to_numpy() == 0)
    return stats[["mean", "ci95", "count", "exact", "record_ci95"]]


def _null_reasons(frame: pd.DataFrame) -> dict[tuple[object, ...], str]:
    nulls = frame[frame["value"].isna()]
    reasons: dict[tuple[object, ...], set[str]] = {}
    for key, reason in zip(
        nulls[[*ROW_KEYS, "metric"]].itertuples(index=False, name=None),
        nulls["reason"],
        strict=True,
    ):
        text = "not measured" if pd.isna(reason) or not reason else str(reason)
        reasons.setdefault(key, set()).add(text)
    return {key: "; ".join(sorted(texts)) for key, texts in reasons.items()}


def _columns(frame: pd.DataFrame) -> tuple[list[Column], str | None]:
    """A table's metric columns (headline ones first) and the metric it is sorted by.

    ``frame`` is in file and metric order, so the first record's order decides.
    """
    firsts = frame.drop_duplicates("metric")
    columns = [
        Column(str(m), None if pd.isna(u) else str(u), bool(h), bool(hl))
        for m, u, h, hl in zip(
            firsts["metric"],
            firsts["unit"],
            firsts["higher_is_better"],
            firsts["headline"],
            strict=True,
        )
    ]
    headlines = frame.loc[frame["headline"], "metric"]
    sort_metric = str(headlines.iloc[0]) if len(headlines) else None
    columns.sort(key=lambda c: not c.headline)
    return columns, sort_metric


def rank_rows(
    rows: list[Row], sort_metric: str | None, higher_is_better: bool, min_seeds: int = MIN_SEEDS
) -> list[Row]:
    """Rows best first by ``sort_metric`` (n/a last), fully-seeded rows before preliminary
    ones (fewer than ``min_seeds`` seeds); competition ranks for fully-seeded, non-reference
    rows."""
    for row in rows:
        row.preliminary = not row.reference and row.seed_count < min_seeds

    def order(row: Row) -> tuple[object, ...]:
        value = row.value(sort_metric)
        missing = value is None
        signed = 0.0 if value is None else (-value if higher_is_better else value)
        key = (
            missing,
            signed,
            row.method,
            row.method_version,
            student_key(row.student),
            row.transfer or "",
        )
        return (row.preliminary, *key)

    ordered = sorted(rows, key=order)
    ranked = 0
    previous: float | None = None
    previous_rank = 0
    for row in ordered:
        value = row.value(sort_metric)
        if row.reference or row.preliminary or value is None:
            row.rank = None
            continue
        ranked += 1
        row.rank = previous_rank if value == previous else ranked
        previous, previous_rank = value, row.rank
    return ordered


def _subject(records: Sequence[Record]) -> tuple[str, str] | None:
    """The (name, version) of the backbone the row's headline scores, if recorded."""
    for record in records:
        subject = record.components.get("subject")
        if subject is not None:
            return subject.name, subject.version
    return None


def _per_seed(records: Sequence[Record]) -> dict[str, dict[int, float]]:
    """Each metric's value per seed over ``records`` (null values left out)."""
    values: dict[str, dict[int, list[float]]] = {}
    for record in records:
        for metric in record.metrics:
            if metric.value is not None:
                values.setdefault(metric.name, {}).setdefault(record.seed, []).append(metric.value)
    return {
        name: {seed: sum(v) / len(v) for seed, v in sorted(by_seed.items())}
        for name, by_seed in values.items()
    }


def build_tables(files: Sequence[RecordFile], min_seeds: int = MIN_SEEDS) -> list[Table]:
    """The leaderboard tables of the ranked record files, sorted by suite, protocol, device;
    rows with fewer than ``min_seeds`` seeds are preliminary (see :func:`rank_rows`)."""
    files = sorted(files, key=lambda f: f.path)
    frame = metric_frame(files)
    cells: dict[tuple[object, ...], Cell] = {}
    table_frames: dict[tuple[object, ...], pd.DataFrame] = {}
    if len(frame):
        stats = seed_statistics(frame)
        reasons = _null_reasons(frame)
        for key, mean, ci95, count, exact, record_ci95 in zip(
            stats.index,
            stats["mean"],
            stats["ci95"],
            stats["count"],
            stats["exact"],
            stats["record_ci95"],
            strict=True,
        ):
            missing = math.isnan(mean)
            cells[key] = Cell(
                None if missing else float(mean),
                None if missing or math.isnan(ci95) else float(ci95),
                int(count),
                reasons.get(key) if missing else None,
                exact=bool(exact) and not missing,
                record_ci95=None if missing or math.isnan(record_ci95) else float(record_ci95),
            )
        table_frames = dict(iter(frame.groupby(list(TABLE_KEYS), sort=True)))

    grouped: dict[tuple[object, ...], dict[tuple[str, str, str, str], list[RecordFile]]] = {}
    for file in files:
        record = file.record
        assert record is not None
        row_key = (
            record.method.name,
            record.method.version,
            student_key(row_student(record)),
            row_transfer(record) or "",
        )
        grouped.setdefault(table_key(record), {}).setdefault(row_key, []).append(file)

    tables = []
    for key in sorted(grouped):
        suite, protocol, version, dataset, teacher, device, precision = key
        part = table_frames.get(key)
        columns, sort_metric = _columns(part) if part is not None else ([], None)
        rows = []
        for (method, method_version, student, transfer), row_files in sorted(grouped[key].items()):
            records = [f.record for f in row_files if f.record is not None]
            row_cells = {}
            for column in columns:
                cell = cells.get((*key, method, method_version, student, transfer, column.name))
                if cell is not None:
                    row_cells[column.name] = cell
            runs = sorted(
                (Run(r.seed, r.run_id, f.path) for f, r in zip(row_files, records, strict=True)),
                key=lambda run: (run.seed, run.path),
            )
            rows.append(
                Row(
                    method=method,
                    method_version=method_version,
                    reference=any(r.method.reference for r in records),
                    cells=row_cells,
                    runs=runs,
                    subject=_subject(records),
                    student=row_student(records[0]),
                    transfer=transfer or None,
                    transfer_chosen=bool(records[0].protocol.config.get("transfer")),
                    per_seed=_per_seed(records),
                    self_reported=tuple(
                        dict.fromkeys(why for r in records for why in self_reported(r))
                    ),
                )
            )
        attach_deltas(rows, [c.name for c in columns])
        sort_hib = next((c.higher_is_better for c in columns if c.name == sort_metric), True)
        hashes = {
            f.record.protocol.config_hash
            for row_files in grouped[key].values()
            for f in row_files
            if f.record is not None
        }
        tables.append(
            Table(
                suite=str(suite),
                protocol=str(protocol),
                version=int(version),  # type: ignore[call-overload]
                device=str(device),
                columns=columns,
                rows=rank_rows(rows, sort_metric, sort_hib, min_seeds),
                sort_metric=sort_metric,
                config_hashes=sorted(hashes),
                dataset=str(dataset),
                teacher=str(teacher),
                precision=str(precision),
            )
        )
    return tables

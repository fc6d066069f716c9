"""Two rows of one protocol compared seed by seed: ``kdbench compare``.

A row is a method with its student (``kd@shapes-mobilevit``; a bare method name matches
it with whichever student its records have, if only one) and, after ``+``, the transfer set
a run chose for it (``kd+retrieved``; without one, the records on the method's own set).
For each metric the difference is taken per seed the two rows share (the same seed draws
the same episodes, tasks and data), and reported as the mean difference with a 95% CI from
those paired differences (Student's t; none with a single shared seed) and the paired
t-test's p-value.

Beside it, a hierarchical paired bootstrap (:func:`kdbench.metrics.stats.paired_bootstrap`)
resamples the seeds and, where both records keep the metric per draw and drew the same
draws (the same ``draws`` hash), the draws within each seed: fewshot's episodes. Elsewhere
it resamples the seeds alone. Its interval and p-value say which level they are over.

The students' costs come from the device records in the same folder: parameters and FLOPs
per architecture, latency per device.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdbench.errors import ConfigError, RecordError
from kdbench.leaderboard.students import row_student
from kdbench.leaderboard.transfers import row_transfer
from kdbench.metrics.stats import mean_ci95, paired_bootstrap, paired_ci95, paired_t_p
from kdbench.record_files import find_record_files, load_record
from kdbench.results import Record
from kdbench.terminal import text_table

COSTS = ("params_m", "gflops", "latency_p50_ms")
"""Device metrics shown beside a comparison (when the folder has them)."""
DEVICE_FREE = ("params_m", "gflops")
"""Costs of the architecture alone; the others are per device fingerprint."""


@dataclass
class Paired:
    """One metric of two rows over their shared seeds."""

    metric: str
    unit: str | None
    seeds: list[int]
    a: float | None
    b: float | None
    diff: float | None
    ci95: float | None
    p_t: float | None = None
    """Paired t-test over the shared seeds (None below two)."""
    bootstrap: tuple[float, float] | None = None
    """95% interval of the hierarchical paired bootstrap."""
    p_bootstrap: float | None = None
    level: str = "seeds"
    """What the bootstrap resampled: ``"seeds"`` or ``"seeds and episodes"``."""


@dataclass
class Comparison:
    protocol: str
    a: str
    b: str
    metrics: list[Paired]
    costs: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Device metric -> (student of a, student of b), means over the device records."""


def row_of(record: Record) -> tuple[str, str | None]:
    """(method, student) of a record, as the leaderboard keys its rows."""
    return record.method.name, row_student(record)


def _records(paths: Iterable[Path]) -> list[Record]:
    out = []
    for path in paths:
        try:
            record = load_record(path)
        except RecordError:
            continue  # `kdbench validate` reports bad files; a comparison skips them
        if record.status == "ok" and not record.smoke:
            out.append(record)
    return out


def _label(record: Record) -> str:
    """``method[@student][+transfer]`` as a row argument names the record's row."""
    label = "@".join(filter(None, row_of(record)))
    chosen = record.protocol.config.get("transfer")
    return f"{label}+{chosen}" if chosen else label


def _select(records: list[Record], protocol: str, row: str) -> dict[int, Record]:
    head, plus, transfer = row.partition("+")
    method, _, student = head.partition("@")
    chosen = [
        r
        for r in records
        if r.protocol.name == protocol
        and row_of(r)[0] == method
        and (not student or row_of(r)[1] == student)
        and (row_transfer(r) == transfer if plus else not r.protocol.config.get("transfer"))
    ]
    if not chosen:
        known = sorted({_label(r) for r in records if r.protocol.name == protocol})
        raise ConfigError(
            f"no {protocol} records of {row!r}; rows with records: {', '.join(known) or 'none'}"
        )
    students = sorted({str(row_of(r)[1]) for r in chosen})
    if len(students) > 1:
        raise ConfigError(
            f"{row!r} has {protocol} records with several students ({', '.join(students)}); "
            f"name one, e.g. {method}@{students[0]}"
        )
    if len({r.protocol.version for r in chosen}) > 1:
        raise ConfigError(f"{row!r}: records of several {protocol} versions; keep one")
    by_seed: dict[int, Record] = {}
    for record in sorted(chosen, key=lambda r: r.created_at):
        by_seed[record.seed] = record  # the latest run of a seed
    return by_seed


def draw_values(record: Record, metric: str) -> tuple[str, np.ndarray] | None:
    """The metric per draw, with the hash of the draws, when the record keeps it: fewshot's
    ``acc_<k>shot`` per episode (``correct_<k>shot`` out of the queries of an episode).
    None when the record keeps no per-draw values whose mean is the metric."""
    if record.protocol.name != "fewshot" or not metric.startswith("acc_"):
        return None
    shots = metric.removeprefix("acc_")
    correct = record.statistics.get(f"correct_{shots}")
    queries = record.statistics.get("queries_per_episode")
    draws = record.draws.get(f"episodes_{shots}")
    if not isinstance(correct, list) or not correct or not queries or draws is None:
        return None
    values = 100.0 * np.asarray(correct, dtype=np.float64) / float(queries)
    value = record.metric(metric).value
    if value is None or abs(values.mean() - value) > 1e-6 * max(1.0, abs(value)):
        return None  # not the same quantity: do not pretend to pair by draw
    return draws, values


def _bootstrap(rows_a: dict[int, Record], rows_b: dict[int, Record], shared, metric: str):
    """Per shared seed, A - B per draw where both records drew the same draws, else the
    seed's difference alone; and the level that gives."""
    differences, by_draw = {}, True
    for seed in shared:
        a, b = draw_values(rows_a[seed], metric), draw_values(rows_b[seed], metric)
        if a is not None and b is not None and a[0] == b[0] and a[1].shape == b[1].shape:
            differences[seed] = a[1] - b[1]
        else:
            by_draw = False
            va, vb = rows_a[seed].metric(metric).value, rows_b[seed].metric(metric).value
            differences[seed] = np.array([float(va) - float(vb)])  # type: ignore[arg-type]
    if not by_draw:  # one level for all seeds: their own differences
        differences = {s: np.array([d.mean()]) for s, d in differences.items()}
    return differences, ("seeds and episodes" if by_draw else "seeds")


def _values(rows: dict[int, Record], metric: str) -> dict[int, float]:
    """Seed -> the metric's value, for the records that measured it."""
    values = {seed: record.metric(metric).value for seed, record in rows.items()}
    return {seed: v for seed, v in values.items() if v is not None}


def compare(
    folder: Path, protocol: str, a: str, b: str, metrics: list[str] | None = None
) -> Comparison:
    """Rows ``a`` and ``b`` of ``protocol`` paired over the seeds both have in ``folder``."""
    records = _records(find_record_files([folder])[0])
    rows_a, rows_b = _select(records, protocol, a), _select(records, protocol, b)
    seeds = sorted(set(rows_a) & set(rows_b))
    if not seeds:
        raise ConfigError(
            f"{a!r} (seeds {sorted(rows_a)}) and {b!r} (seeds {sorted(rows_b)}) share no seed"
        )
    sample = rows_a[seeds[0]]
    names = metrics or [m.name for m in sample.metrics if m.headline]
    paired = []
    for name in names:
        try:
            unit = sample.metric(name).unit
        except KeyError:
            raise ConfigError(
                f"{protocol} records have no metric {name!r}; they have: "
                + ", ".join(m.name for m in sample.metrics)
            ) from None
        values_a, values_b = _values(rows_a, name), _values(rows_b, name)
        diff, ci, shared = paired_ci95(values_a, values_b)
        if not shared:
            paired.append(Paired(name, unit, [], None, None, None, None))
            continue
        mean_a = mean_ci95([values_a[s] for s in shared])[0]
        mean_b = mean_ci95([values_b[s] for s in shared])[0]
        differences, level = _bootstrap(rows_a, rows_b, shared, name)
        _, lower, upper, p_boot = paired_bootstrap(differences)
        paired.append(
            Paired(
                name,
                unit,
                list(shared),
                mean_a,
                mean_b,
                diff,
                ci,
                p_t=paired_t_p([values_a[s] - values_b[s] for s in shared]),
                bootstrap=(lower, upper),
                p_bootstrap=p_boot,
                level=level,
            )
        )
    comparison = Comparison(protocol, a, b, paired)
    _add_costs(comparison, records, row_of(rows_a[seeds[0]])[1], row_of(rows_b[seeds[0]])[1])
    return comparison


def _add_costs(
    comparison: Comparison, records: list[Record], student_a: str | None, student_b: str | None
) -> None:
    """Mean device costs of each row's student (the subject of its device records):
    parameters and FLOPs once, latency per device fingerprint (never averaged across)."""
    from kdbench.leaderboard.devices import fingerprint_id, short_id

    device = [r for r in records if r.protocol.name == "device" and r.device_fingerprint]

    def mean_cost(student: str | None, metric: str, where: str | None) -> float | None:
        values = []
        for record in device:
            subject = record.components.get("subject")
            if subject is None or subject.name != student:
                continue
            if where is not None and fingerprint_id(record.device_fingerprint or {}) != where:
                continue
            spec = next((m for m in record.metrics if m.name == metric), None)
            if spec is not None and spec.value is not None:
                values.append(spec.value)
        return mean_ci95(values)[0] if values else None

    fingerprints = sorted({fingerprint_id(r.device_fingerprint or {}) for r in device})
    for metric in COSTS:
        places = [None] if metric in DEVICE_FREE else fingerprints
        for where in places:
            pair = (mean_cost(student_a, metric, where), mean_cost(student_b, metric, where))
            if pair != (None, None):
                label = metric if where is None else f"{metric} @{short_id(where)}"
                comparison.costs[label] = pair


def format_comparison(c: Comparison) -> str:
    """The table ``kdbench compare`` prints."""

    def num(x: float | None, digits: int = 2) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    def pval(p: float | None, resolution: float = 0.0) -> str:
        if p is None:
            return "n/a"
        return f"<{resolution:.2g}" if resolution and p <= resolution else f"{p:.3g}"

    lines = [f"{c.protocol}: {c.a} (A) vs {c.b} (B), paired over shared seeds", ""]
    header = ("metric", "A", "B", "A - B ± 95% CI (t)", "p (t)", "bootstrap 95% CI", "p", "seeds")
    rows = []
    for p in c.metrics:
        ci = f" ± {p.ci95:.2f}" if p.ci95 is not None else " (one seed: no CI)"
        shown = "n/a" if p.diff is None else f"{p.diff:+.2f}{ci}"
        boot = "n/a" if p.bootstrap is None else f"[{p.bootstrap[0]:+.2f}, {p.bootstrap[1]:+.2f}]"
        rows.append(
            (
                p.metric,
                num(p.a),
                num(p.b),
                shown,
                pval(p.p_t),
                boot,
                pval(p.p_bootstrap, 1 / 2000),
                ",".join(map(str, p.seeds)),
            )
        )
    for metric, (x, y) in c.costs.items():
        ratio = f"A/B = {x / y:.2f}" if x is not None and y else ""
        rows.append((f"{metric} (device)", num(x, 3), num(y, 3), ratio, "", "", "", ""))
    lines += text_table(header, rows)
    levels = sorted({p.level for p in c.metrics if p.bootstrap is not None})
    if levels:
        lines += [
            "",
            "p (t): paired t-test over the shared seeds. Bootstrap: hierarchical, paired, 2000 "
            f"resamples over {' / '.join(levels)}; its p is two-sided, at best 1/2000.",
        ]
    return "\n".join(lines)

"""Reference rows per architecture: each row against the baseline trained with its student.

A method only means something next to the same student trained on labels alone (the
``supervised`` method), so a row's difference is taken from the baseline row *with the same
student*, never another architecture's. The difference is paired over the seeds both rows
share: the mean of the per-seed differences, with a 95% t interval from them
(:func:`kdbench.metrics.stats.mean_ci95`), and no value below two shared seeds.

Each difference also has a paired t-test p-value, and the differences of one metric in one
table are one family: a difference is *significant* when its Holm-adjusted p-value is below
:data:`ALPHA` (:func:`kdbench.metrics.stats.holm`), so a table of many methods does not
flag chance differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kdbench.leaderboard.students import row_label
from kdbench.metrics.stats import holm, paired_ci95, paired_t_p

if TYPE_CHECKING:
    from kdbench.leaderboard.aggregate import Row

#: The method whose row with a student is the baseline of every other row with that student.
BASELINE_METHOD = "supervised"
#: The fewest shared seeds a paired difference is shown for.
MIN_SHARED_SEEDS = 2
#: The family-wise error rate of the differences from the baseline in one table and metric.
ALPHA = 0.05


@dataclass(frozen=True)
class Delta:
    """A row's paired difference from its baseline in one metric: mean ± ci95 over the
    shared ``seeds``; ``mean`` is None (with the ``reason``) below two shared seeds."""

    mean: float | None
    ci95: float | None
    seeds: tuple[int, ...]
    baseline: str
    reason: str | None = None
    p_value: float | None = None
    """Two-sided paired t-test p-value over the shared seeds."""
    p_holm: float | None = None
    """``p_value`` after Holm's correction across the table's rows (same metric)."""

    @property
    def significant(self) -> bool:
        """The difference holds after Holm's correction: adjusted p below :data:`ALPHA`."""
        return self.p_holm is not None and self.p_holm < ALPHA


def paired_delta(
    values: Mapping[int, float], baseline: Mapping[int, float], baseline_label: str
) -> Delta:
    """``values - baseline`` over the seeds both have, paired by seed."""
    mean, ci95, seeds = paired_ci95(values, baseline)
    p_value = paired_t_p([values[s] - baseline[s] for s in seeds])
    if len(seeds) < MIN_SHARED_SEEDS:
        shared = f"seed {seeds[0]}" if seeds else "no seed"
        reason = (
            f"{shared} shared with {baseline_label}; a paired interval needs "
            f"{MIN_SHARED_SEEDS} or more"
        )
        return Delta(None, None, seeds, baseline_label, reason)
    return Delta(mean, ci95, seeds, baseline_label, p_value=p_value)


def is_baseline(row: Row) -> bool:
    """Whether ``row`` is a baseline: the ``supervised`` method trained with a student."""
    return row.method == BASELINE_METHOD and row.student is not None


def _baseline_for(row: Row, baselines: Sequence[Row]) -> Row | None:
    """The baseline row with ``row``'s student; of several, the one on the same transfer
    set (else the baseline's own), then the one sharing the most seeds with ``row``, then
    the highest version."""
    same = [b for b in baselines if b.student == row.student]
    if row.student is None or not same:
        return None
    own = {run.seed for run in row.runs}

    def preference(baseline: Row) -> tuple[bool, bool, int, str]:
        return (
            baseline.transfer == row.transfer,
            not baseline.transfer_chosen,
            len(own & {run.seed for run in baseline.runs}),
            baseline.method_version,
        )

    return max(same, key=preference)


def attach_deltas(rows: Sequence[Row], metrics: Sequence[str]) -> None:
    """Set each row's ``deltas`` (per metric in ``metrics``) against the baseline row with
    its student; baselines, rows without a student and rows without such a baseline get
    none."""
    baselines = [row for row in rows if is_baseline(row)]
    for row in rows:
        baseline = None if is_baseline(row) else _baseline_for(row, baselines)
        if baseline is None:
            continue
        label = f"{row_label(baseline.method, baseline.student)} {baseline.method_version}"
        row.deltas = {
            metric: paired_delta(row.per_seed[metric], baseline.per_seed[metric], label)
            for metric in metrics
            if metric in row.per_seed and metric in baseline.per_seed
        }
    for metric in metrics:
        family = {
            str(i): row.deltas[metric].p_value
            for i, row in enumerate(rows)
            if metric in row.deltas and row.deltas[metric].p_value is not None
        }
        for key, adjusted in holm(family).items():
            row = rows[int(key)]
            row.deltas[metric] = replace(row.deltas[metric], p_holm=adjusted)

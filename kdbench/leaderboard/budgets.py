"""Best under a budget: the best row of a score table whose student fits a cost limit.

Computed at build time for a few budgets per table and device: latency p50 at most X ms (on
that device) and parameters at most Y million, each also "any". The limits are round
numbers (1, 2 and 5 times a power of ten) spanning the costs the table's rows have, so the
smallest admits the cheapest row and the largest admits them all. Only ranked rows compete
(reference rows are context, as on the fronts); a row whose cost on a limited axis is
unknown does not fit that limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kdbench.leaderboard.aggregate import Row, Table, student_key
from kdbench.leaderboard.costs import LATENCY, PARAMS, DeviceCosts
from kdbench.leaderboard.fronts import joins_device_records
from kdbench.leaderboard.plots import LOG_FLOOR

#: The most limits offered per axis (besides "any").
MOST_LEVELS = 6
_STEPS = (1, 2, 5)


def _round_up(value: float) -> float:
    """The smallest 1-, 2- or 5-times-a-power-of-ten number at least ``value`` (> 0)."""
    exponent = math.floor(math.log10(value))
    for e in (exponent - 1, exponent, exponent + 1):
        for m in _STEPS:
            level = float(f"{m}e{e}")
            if level >= value:
                return level
    return float(f"1e{exponent + 2}")  # not reached: 1e(exponent+1) > value


def budget_levels(values: Iterable[float], most: int = MOST_LEVELS) -> list[float]:
    """Round limits spanning ``values``: from the first round number that admits the smallest
    value to the first that admits the largest. Over ``most`` of them, the powers of ten
    between the two ends are kept, evenly thinned if they are still too many. Values below
    :data:`LOG_FLOOR` or not finite are left out."""
    usable = sorted(v for v in values if math.isfinite(v) and v >= LOG_FLOOR)
    if not usable:
        return []
    low, high = _round_up(usable[0]), _round_up(usable[-1])
    first, last = math.floor(math.log10(low)), math.floor(math.log10(high))
    series = [
        (m, level)
        for e in range(first, last + 1)
        for m in _STEPS
        if low <= (level := float(f"{m}e{e}")) <= high
    ]
    if len(series) <= most:
        return [level for _, level in series]
    inner = [level for m, level in series[1:-1] if m == 1]
    if len(inner) > most - 2:
        keep = most - 2
        inner = [inner[round(i * (len(inner) - 1) / max(keep - 1, 1))] for i in range(keep)]
    return sorted({low, *inner, high})


@dataclass(frozen=True)
class Pick:
    """The best row within a budget, with its score and what it costs."""

    row: Row
    score: float
    latency: float | None
    params: float | None


@dataclass(frozen=True)
class Candidate:
    """A ranked row with its headline score and its costs (None: unknown)."""

    row: Row
    score: float
    latency: float | None
    params: float | None


def best_within(
    candidates: Sequence[Candidate],
    latency_limit: float | None,
    params_limit: float | None,
    *,
    higher_is_better: bool,
) -> Pick | None:
    """The best-scoring candidate whose latency and parameters are within the limits
    (None: no limit); ties go to the cheaper one, then by name. None if nothing fits."""

    def fits(c: Candidate) -> bool:
        if latency_limit is not None and (c.latency is None or c.latency > latency_limit):
            return False
        return params_limit is None or (c.params is not None and c.params <= params_limit)

    def order(c: Candidate) -> tuple[object, ...]:
        signed = -c.score if higher_is_better else c.score
        inf = math.inf
        return (
            signed,
            inf if c.params is None else c.params,
            inf if c.latency is None else c.latency,
            c.row.method,
            c.row.method_version,
            student_key(c.row.student),
            c.row.transfer or "",
        )

    fitting = sorted((c for c in candidates if fits(c)), key=order)
    if not fitting:
        return None
    best = fitting[0]
    return Pick(best.row, best.score, best.latency, best.params)


@dataclass(frozen=True)
class BudgetView:
    """The best row of a table for each budget on one device: latency limits (ms, on the
    device) by parameter limits (M); ``None`` is "any". ``best[i][j]`` is the pick for
    ``latency_options[i]`` and ``params_options[j]``."""

    device: str
    latency_options: tuple[float | None, ...]
    params_options: tuple[float | None, ...]
    best: tuple[tuple[Pick | None, ...], ...]

    def pick(self, latency: float | None, params: float | None) -> Pick | None:
        """The pick for one budget; the limits must be among the options."""
        i = self.latency_options.index(latency)
        return self.best[i][self.params_options.index(params)]


def candidates_of(table: Table, costs: DeviceCosts, device: str) -> list[Candidate]:
    """The ranked rows of ``table`` with their headline score and costs on ``device``."""
    out = []
    for row in table.rows:
        score = row.value(table.sort_metric)
        if row.rank is None or score is None:
            continue
        latency = costs.cost(table.suite, device, row, LATENCY, table.precision)
        params = costs.cost(table.suite, None, row, PARAMS, table.precision)
        out.append(Candidate(row, score, latency, params))
    return out


def table_budgets(table: Table, costs: DeviceCosts) -> list[BudgetView]:
    """One budget view per device fingerprint of the table's suite on which a backbone of
    the table has a measured latency (on another one every latency limit would read "none
    fits"); empty when no device record measured a backbone of the table."""
    column = table.sort_column
    if column is None or not joins_device_records(table, costs):
        return []
    views = []
    for device in costs.suite_devices(table.suite):
        candidates = candidates_of(table, costs, device)
        if all(c.latency is None for c in candidates):
            continue
        latency = (None, *budget_levels(c.latency for c in candidates if c.latency is not None))
        params = (None, *budget_levels(c.params for c in candidates if c.params is not None))
        best = tuple(
            tuple(
                best_within(candidates, x, y, higher_is_better=column.higher_is_better)
                for y in params
            )
            for x in latency
        )
        views.append(BudgetView(device, latency, params, best))
    return views

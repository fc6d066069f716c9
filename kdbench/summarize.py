"""``kdbench summarize``: the leaderboard's tables in the terminal, without building a site.

The same records are ranked, and the same tables made, as ``kdbench leaderboard build`` does
(:mod:`kdbench.leaderboard.intake`, :func:`kdbench.leaderboard.aggregate.build_tables`),
with the same seed policy. Three formats:

``markdown``
    One table per (suite, protocol, version, device): rank, row, each headline metric's mean
    ± 95% CI across seeds, the paired difference from ``supervised`` with the same student
    (✱ where it holds after Holm's correction) and the seeds. Record text is untrusted:
    control characters are escaped and ``|`` cannot break a table.
``csv``
    The site's ``data/leaderboard.csv`` (formula-neutralised cells).
``json``
    The site's ``data/leaderboard.json`` rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from kdbench.errors import ConfigError
from kdbench.leaderboard.acceptance import MIN_SEEDS
from kdbench.leaderboard.aggregate import Row, Table, build_tables
from kdbench.leaderboard.baselines import is_baseline
from kdbench.leaderboard.devices import short_id
from kdbench.leaderboard.formatting import ci_places, format_ci, format_number, signed_number
from kdbench.terminal import printable

FORMATS = ("markdown", "csv", "json")


def _text(value: str) -> str:
    """Record text as one safe markdown cell."""
    return printable(value).replace("|", "\\|")


def _cell(row: Row, metric: str) -> str:
    cell = row.cells.get(metric)
    if cell is None:
        return "–"
    if cell.mean is None:
        return "n/a"
    ci = "" if cell.exact else format_ci(cell.mean, cell.ci95)
    return f"{format_number(cell.mean)} {ci}".strip()


def _delta(row: Row, metric: str) -> str:
    if is_baseline(row):
        return "baseline"
    delta = row.deltas.get(metric)
    if delta is None or delta.mean is None:
        return "–"
    mark = " ✱" if delta.significant else ""
    places = ci_places(delta.mean, delta.ci95)
    return f"{signed_number(delta.mean, places)} {format_ci(delta.mean, delta.ci95)}{mark}".strip()


def _rank(row: Row) -> str:
    if row.rank is not None:
        return str(row.rank)
    if row.reference:
        return "ref"
    return "prelim." if row.preliminary else "–"


def markdown_table(table: Table) -> str:
    headlines = [c for c in table.columns if c.headline] or table.columns[:1]
    with_deltas = [c.name for c in headlines if any(c.name in r.deltas for r in table.rows)]
    title = f"### {table.suite} · {table.key}"
    if table.dataset_label:
        title += f" · {_text(table.dataset_label)}"
    if table.teacher_label:
        title += f" · teacher {_text(table.teacher_label)}"
    if table.device:
        title += f" · device {short_id(table.device)}"
    transfers = any(row.transfer is not None for row in table.rows)
    header = ["rank", "method", "student", *(["transfer set"] if transfers else [])]
    header += [f"{c.name} ({c.unit})" if c.unit else c.name for c in headlines]
    header += [f"Δ {name} vs supervised" for name in with_deltas]
    header.append("seeds")
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [_rank(row), _text(row.method), _text(row.student or "–")]
        if transfers:  # the same method on two transfer sets is two rows
            cells.append(_text(row.transfer or "–"))
        cells += [_cell(row, c.name) for c in headlines]
        cells += [_delta(row, name) for name in with_deltas]
        cells.append(str(row.seed_count))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(records: Path, fmt: str = "markdown", min_seeds: int | None = None) -> str:
    """The ranked records under ``records`` as text in ``fmt``, with the leaderboard's seed
    policy (``min_seeds`` None: :data:`~kdbench.leaderboard.acceptance.MIN_SEEDS`)."""
    min_seeds = MIN_SEEDS if min_seeds is None else min_seeds
    from kdbench.leaderboard.downloads import table_rows, tables_csv
    from kdbench.leaderboard.intake import read_and_screen, registered_protocol_versions

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not Path(records).is_dir():
        raise ConfigError(f"records folder {str(records)!r} does not exist; pass a folder")
    intake = read_and_screen(Path(records), registered_protocol_versions())
    tables = build_tables(intake.ranked, min_seeds)
    if fmt == "csv":
        return tables_csv(tables).decode("utf-8")
    if fmt == "json":
        return json.dumps(table_rows(tables), indent=1, ensure_ascii=False, allow_nan=False)
    counts = intake.reason_counts()
    skipped = ", ".join(f"{n} {reason}" for reason, n in counts.items())
    lines = [
        f"{len(intake.ranked)} ranked record(s)"
        + (f"; not ranked: {skipped}" if skipped else "")
        + f". Mean ± 95% CI across seeds; rows with fewer than {min_seeds} seeds are"
        " preliminary (prelim.); ✱: the difference from supervised holds after Holm's"
        " correction.",
    ]
    for table in tables:
        lines += ["", markdown_table(table)]
    return "\n".join(lines) + "\n"

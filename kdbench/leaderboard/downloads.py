"""The site's downloads: the aggregated tables as CSV and JSON, and a list of every record.

One long-format row per (table, method, student, metric), so every protocol fits one file;
each with the row's paired difference from the ``supervised`` row with the same student. Floats are
written with ``repr`` (shortest round-trip form) so the files are exact and stable.

Text in the CSV comes from records, so a spreadsheet must not run it: as OWASP recommends
against CSV injection, a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab, a
carriage return or a line feed (or the full-width ``＝＋－＠``) gets a leading ``'``. Numbers
are numbers, never text, so they stay as they are (``-0.5`` is still a number).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from kdbench.leaderboard.aggregate import Table
from kdbench.leaderboard.intake import REASONS, Intake
from kdbench.leaderboard.links import raw_record
from kdbench.leaderboard.students import row_student

TABLE_COLUMNS = (
    "suite",
    "protocol",
    "protocol_version",
    "dataset",
    "teacher",
    "device",
    "precision",
    "method",
    "method_version",
    "student",
    "transfer_set",
    "reference",
    "rank",
    "metric",
    "unit",
    "higher_is_better",
    "headline",
    "sort_metric",
    "mean",
    "ci95",
    "record_ci95",
    "seeds",
    "preliminary",
    "values",
    "reason",
    "delta_vs_baseline",
    "delta_ci95",
    "delta_seeds",
    "delta_p_holm",
    "baseline",
)


def table_rows(tables: Sequence[Table]) -> list[dict[str, Any]]:
    """Every (table, row, metric) as a flat dict, in page order."""
    out = []
    for table in tables:
        for row in table.rows:
            for column in table.columns:
                cell = row.cells.get(column.name)
                delta = row.deltas.get(column.name)
                out.append(
                    {
                        "suite": table.suite,
                        "protocol": table.protocol,
                        "protocol_version": table.version,
                        "dataset": table.dataset or None,
                        "teacher": table.teacher_label or None,
                        "device": table.device or None,
                        "precision": table.precision,
                        "method": row.method,
                        "method_version": row.method_version,
                        "student": row.student,
                        "transfer_set": row.transfer,
                        "reference": row.reference,
                        "rank": row.rank,
                        "metric": column.name,
                        "unit": column.unit,
                        "higher_is_better": column.higher_is_better,
                        "headline": column.headline,
                        "sort_metric": column.name == table.sort_metric,
                        "mean": cell.mean if cell else None,
                        "ci95": cell.ci95 if cell else None,
                        "record_ci95": cell.record_ci95 if cell else None,
                        "seeds": len(row.runs),
                        "preliminary": row.preliminary,
                        "values": cell.count if cell else 0,
                        "reason": (cell.reason if cell else "not reported by these records"),
                        "delta_vs_baseline": delta.mean if delta else None,
                        "delta_ci95": delta.ci95 if delta else None,
                        "delta_seeds": len(delta.seeds) if delta else None,
                        "delta_p_holm": delta.p_holm if delta else None,
                        "baseline": delta.baseline if delta else None,
                    }
                )
    return out


#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def csv_text(text: str) -> str:
    """``text`` as a CSV cell that no spreadsheet evaluates as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return csv_text(str(value))


def tables_csv(tables: Sequence[Table]) -> bytes:
    """The aggregated tables as CSV (UTF-8, ``\\n`` line ends, empty cell for null)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for row in table_rows(tables):
        writer.writerow([_csv_cell(row[c]) for c in TABLE_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def _json_bytes(data: dict[str, Any]) -> bytes:
    """``data`` as JSON with each top-level value, and each element of a top-level list, on
    a line of its own: readable and diffable, and encoded by the C encoder (indented JSON is
    encoded in pure Python, several times slower for ten thousand rows)."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            body = ",\n  ".join(dump(item) for item in value)
            lines.append(f" {dump(key)}: [\n  {body}\n ]")
        else:
            lines.append(f" {dump(key)}: {dump(value)}")
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def tables_json(tables: Sequence[Table], stamp: str | None) -> bytes:
    """The aggregated tables as JSON: ``{"records_up_to", "columns", "rows"}``."""
    return _json_bytes(
        {"records_up_to": stamp, "columns": list(TABLE_COLUMNS), "rows": table_rows(tables)}
    )


def records_json(intake: Intake) -> bytes:
    """Every record file read: where its copy and page are, and whether and why it is ranked."""
    unranked = {u.file.path: u for u in intake.unranked}
    pages = intake.run_pages()
    rows = []
    for file in intake.files:
        record = file.record
        skipped = unranked.get(file.path)
        rows.append(
            {
                "path": file.path,
                "raw": raw_record(file.path) if file.raw is not None else None,
                "page": pages.get(file.path),
                "run_id": record.run_id if record else None,
                "suite": record.suite if record else None,
                "protocol": record.protocol.name if record else None,
                "protocol_version": record.protocol.version if record else None,
                "method": record.method.name if record else None,
                "method_version": record.method.version if record else None,
                "student": row_student(record) if record else None,
                "seed": record.seed if record else None,
                "status": record.status if record else None,
                "smoke": record.smoke if record else None,
                "ranked": skipped is None,
                "reason": skipped.reason if skipped else None,
                "detail": skipped.detail if skipped else None,
            }
        )
    return _json_bytes({"reasons": REASONS, "records": rows})

"""The overview: (method, student) x protocol, each cell the headline with its CI and rank,
or why it is missing (the protocol refuses the method, or nobody ran it)."""

from __future__ import annotations

from kdbench.leaderboard.aggregate import build_tables
from kdbench.leaderboard.build import build_site
from kdbench.leaderboard.catalog import Catalog
from kdbench.leaderboard.formatting import format_ci, format_number
from kdbench.leaderboard.intake import read_and_screen
from kdbench.leaderboard.overview import (
    NOT_APPLICABLE,
    NOT_RUN,
    VALUE,
    build_overview,
)
from tests.leaderboard.pages import parse, table_cells
from tests.leaderboard.records import TEACHER, make_record, write_records

STUDENT = "shapes-student"


def _records() -> list[dict]:
    out = []
    for seed in range(2):
        for method in ("kd", "supervised"):
            out.append(make_record(protocol="distill", method=method, subject=STUDENT, seed=seed))
        out.append(make_record(protocol="fewshot", method="kd", subject=STUDENT, seed=seed))
        out.append(
            make_record(
                protocol="fewshot", method="teacher", subject=TEACHER, reference=True, seed=seed
            )
        )
        for method, subject in (("teacher", TEACHER), ("student", STUDENT)):
            out.append(
                make_record(
                    protocol="device", method=method, subject=subject, reference=True, seed=seed
                )
            )
    return out


def _site(tmp_path):
    write_records(tmp_path / "records", _records())
    return build_site(tmp_path / "records", tmp_path / "site", protocol_versions={}, min_seeds=1)


def test_cells_hold_the_headline_or_say_why_it_is_missing(tmp_path):
    report = _site(tmp_path)
    tables = [t for t in report.tables if t.suite == "embedded"]
    overview = build_overview("embedded", tables, Catalog.from_registry())
    columns = [t.protocol for t in overview.tables]
    lines = {(line.method, line.student): line for line in overview.rows}
    assert set(lines) == {
        ("kd", STUDENT),
        ("supervised", STUDENT),
        ("teacher", None),
        ("student", STUDENT),
    }

    def status(method, student, protocol):
        return lines[(method, student)].cells[columns.index(protocol)]

    assert status("kd", STUDENT, "fewshot").status == VALUE
    assert status("kd", STUDENT, "fewshot").row.rank == 1
    refused = status("teacher", None, "distill")
    assert refused.status == NOT_APPLICABLE
    assert "reference row of a pretrained model" in refused.reason
    assert "'teacher'" in refused.reason and "'teacher'" not in refused.note
    assert status("kd", STUDENT, "device").status == NOT_APPLICABLE
    assert status("supervised", STUDENT, "fewshot").status == NOT_RUN  # it applies
    assert lines[("teacher", None)].reference and not lines[("kd", STUDENT)].reference


def test_without_the_methods_installed_a_missing_cell_is_not_run(tmp_path):
    files = read_and_screen(_site(tmp_path).records, {}).ranked
    tables = build_tables(files)
    overview = build_overview("embedded", tables, Catalog())
    assert {c.status for line in overview.rows for c in line.cells} == {VALUE, NOT_RUN}


def test_the_overview_page_shows_value_ci_and_rank(tmp_path):
    report = _site(tmp_path)
    page = parse(report.out / "index.html")
    header = [
        " ".join(th.all_text.split())
        for th in page.by_id("t-overview-embedded").find_all("thead")[0].find_all("th")
    ]
    assert header[0].startswith("Method · student")
    assert [h.split("@")[0] for h in header[1:]] == ["distill", "fewshot", "device"]
    rows = {r[0]: r[1:] for r in table_cells(page, "t-overview-embedded")}
    fewshot = next(t for t in report.tables if t.protocol == "fewshot")
    kd = next(r for r in fewshot.rows if r.method == "kd")
    cell = kd.cells["acc_1shot"]
    assert rows[f"kd · {STUDENT}"][1] == (
        f"{format_number(cell.mean)} {format_ci(cell.mean, cell.ci95)} #1 of 1"
    )
    assert rows[f"kd · {STUDENT}"][2] == "not applicable"
    assert rows[f"supervised · {STUDENT}"][1] == "not run"
    assert rows["teacher reference"][0] == "not applicable"
    assert rows["teacher reference"][1].endswith("reference")
    notes = page.find_all("ol")
    texts = [" ".join(li.all_text.split()) for ol in notes for li in ol.find_all("li")]
    assert any("device measures architectures" in t for t in texts)
    assert any(t.startswith("this method is a reference row of a pretrained model") for t in texts)

"""The built site with several students: the Student column and filter, the difference from
the baseline with the same student, the fronts page, the budget view and the downloads."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from kdbench.leaderboard.budgets import table_budgets
from kdbench.leaderboard.build import build_site
from kdbench.leaderboard.costs import device_costs
from kdbench.leaderboard.formatting import ci_places, format_ci, signed_number
from tests.leaderboard.pages import parse, table_cells, table_notes

ROOT = Path(__file__).resolve().parents[2]
STUDENTS = ["shapes-vit-base", "shapes-vit-small", "shapes-vit-tiny"]


def _fewshot(report):
    return next(t for t in report.tables if t.protocol == "fewshot")


def _header(page, table_id):
    table = page.by_id(table_id)
    return [" ".join(th.all_text.split()) for th in table.find_all("thead")[0].find_all("th")]


def test_every_protocol_table_has_a_student_column(zoo_built):
    for name in ("fewshot", "device"):
        page = parse(zoo_built.out / "protocols" / "embedded" / f"{name}.html")
        ids = [t.attrs["id"] for t in page.find_all("table") if "lb-table" in t.attrs["class"]]
        assert len(ids) == (1 if name == "fewshot" else 2)
        for table_id in ids:
            assert _header(page, table_id)[:4] == ["Rank", "Method", "Student", "Version"]
    table = _fewshot(zoo_built)
    page = parse(zoo_built.out / "protocols" / "embedded" / "fewshot.html")
    shown = [
        (row[1].removesuffix(" reference"), row[2]) for row in table_cells(page, "t-fewshot-v1")
    ]
    assert shown == [(r.method, r.student or "–") for r in table.rows]
    kd = sorted(student for method, student in shown if method == "kd")
    assert kd == STUDENTS  # one method, three students, three rows


def test_the_student_filter_lists_the_students_and_tags_the_rows(zoo_built):
    page = parse(zoo_built.out / "protocols" / "embedded" / "fewshot.html")
    table = page.by_id("t-fewshot-v1")
    tools = next(
        d
        for d in page.find_all("div")
        if "table-tools" in (d.attrs.get("class") or "")
        and any(s.attrs.get("data-table") == "t-fewshot-v1" for s in d.find_all("select"))
    )
    assert "hidden" in tools.attrs  # without JavaScript: no control, every row shown
    (select,) = [s for s in tools.find_all("select") if s.attrs.get("class") == "student-filter"]
    options = [(o.attrs["value"], o.all_text) for o in select.find_all("option")]
    assert options == [("", "all students"), *((f"@{s}", s) for s in STUDENTS)]
    rows = [
        tr
        for body in table.find_all("tbody")
        for tr in body.find_all("tr")
        if "group-head" not in (tr.attrs.get("class") or "")
    ]
    assert len(rows) == len(_fewshot(zoo_built).rows)
    tagged = [tr.attrs.get("data-student") for tr in rows]
    assert tagged == [r.student for r in _fewshot(zoo_built).rows]
    assert tagged.count(None) == 1  # the teacher's row


def test_the_difference_from_supervised_pairs_the_same_student(zoo_built):
    table = _fewshot(zoo_built)
    page = parse(zoo_built.out / "protocols" / "embedded" / "fewshot.html")
    header = _header(page, "t-fewshot-v1")
    one = header.index("Δ vs supervised (same student) acc_1shot")
    cells = table_cells(page, "t-fewshot-v1")
    for row, shown in zip(table.rows, cells, strict=True):
        text = shown[one]
        delta = row.deltas.get("acc_1shot")
        if row.method == "supervised":
            assert text == "baseline"
        elif delta is not None and delta.mean is not None:
            assert delta.baseline == f"supervised · {row.student} 0.1.0"
            mark = " ✱" if delta.significant else ""
            places = ci_places(delta.mean, delta.ci95)
            ci = format_ci(delta.mean, delta.ci95)
            assert text == f"{signed_number(delta.mean, places)} {ci}{mark}"
        else:
            assert text == "–"  # blank, with a note saying why
    dkd = next(r for r in table.rows if r.method == "dkd")  # one seed: no paired interval
    assert dkd.deltas["acc_1shot"].mean is None
    notes = table_notes(page, "t-fewshot-v1")
    [dkd_notes] = [texts for key, texts in notes.items() if key.split()[1] == "dkd"]
    assert f"no difference: {dkd.deltas['acc_1shot'].reason}" in dkd_notes
    kd = [r for r in table.rows if r.method == "kd"]
    assert all(r.deltas["acc_1shot"].seeds == (0, 1, 2) for r in kd)


def test_method_pages_show_each_student(zoo_built):
    page = parse(zoo_built.out / "methods" / "kd.html")
    assert "Student" in _header(page, "t-results")
    rows = table_cells(page, "t-results")
    assert sorted(row[3] for row in rows if row[0] == "fewshot@1") == STUDENTS


def test_downloads_name_the_student_and_the_paired_difference(zoo_built):
    rows = list(csv.DictReader(io.StringIO((zoo_built.out / "data/leaderboard.csv").read_text())))
    kd = [
        r
        for r in rows
        if (r["protocol"], r["method"], r["metric"]) == ("fewshot", "kd", "acc_1shot")
    ]
    assert sorted(r["student"] for r in kd) == STUDENTS
    table = _fewshot(zoo_built)
    for r in kd:
        delta = next(x for x in table.rows if x.student == r["student"] and x.method == "kd")
        delta = delta.deltas["acc_1shot"]
        assert float(r["delta_vs_baseline"]) == delta.mean
        assert float(r["delta_ci95"]) == delta.ci95 and r["delta_seeds"] == "3"
        assert r["baseline"] == f"supervised · {r['student']} 0.1.0"
    teacher = next(r for r in rows if r["method"] == "teacher" and r["protocol"] == "fewshot")
    assert teacher["student"] == "" and teacher["delta_vs_baseline"] == ""
    data = json.loads((zoo_built.out / "data/leaderboard.json").read_text())
    assert {r["student"] for r in data["rows"] if r["method"] == "kd"} == set(STUDENTS)
    listing = json.loads((zoo_built.out / "data/records.json").read_text())["records"]
    assert {r["student"] for r in listing if r["method"] == "kd"} == set(STUDENTS)


def test_the_fronts_page_plots_each_axis_and_labels_points(zoo_built):
    page_path = zoo_built.out / "fronts" / "embedded" / "fewshot.html"
    text = page_path.read_text()
    page = parse(text)
    # parameters and FLOPs once; latency on both devices; energy only on the GPU
    assert len(page.find_all("svg")) == 5
    assert "No energy measured for these backbones on Test CPU 8-core" in text
    for student in STUDENTS:
        assert f"· {student}</text>" in text  # labelled "method · student"
    captions = [" ".join(c.all_text.split()) for c in page.find_all("figcaption")]
    assert sum("On the front, cheapest first:" in c for c in captions) == 5
    protocol = (zoo_built.out / "protocols" / "embedded" / "fewshot.html").read_text()
    assert 'href="../../fronts/embedded/fewshot.html#fewshot-v1"' in protocol
    index = (zoo_built.out / "index.html").read_text()
    assert 'href="fronts/embedded/fewshot.html#fewshot-v1"' in index


def test_without_javascript_the_budget_table_lists_every_budget_with_its_best_row(zoo_built):
    page = parse(zoo_built.out / "fronts" / "embedded" / "fewshot.html")
    tables = [t for t in page.find_all("table") if "budget-table" in t.attrs.get("class", "")]
    assert len(tables) == 2  # one per device
    pickers = [d for d in page.find_all("div") if d.attrs.get("class") == "budget-picker"]
    assert sorted(p.attrs["data-table"] for p in pickers) == sorted(t.attrs["id"] for t in tables)
    assert all("hidden" in p.attrs for p in pickers)
    views = table_budgets(_fewshot(zoo_built), device_costs(zoo_built.intake.ranked))
    for table, view in zip(tables, views, strict=True):
        cells = [td for td in table.find_all("td") if "data-latency" in td.attrs]
        assert len(cells) == len(view.latency_options) * len(view.params_options)
        for td in cells:
            i, j = int(td.attrs["data-latency"]), int(td.attrs["data-params"])
            pick = view.best[i][j]
            shown = " ".join(td.all_text.split())
            assert shown.startswith(pick.row.label) if pick else shown == "none fits"


def test_the_same_student_records_give_the_same_bytes(zoo_built, zoo_dir, tmp_path):
    def site(out):
        return {
            p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
        }

    copy = tmp_path / "copy"
    for path in sorted(zoo_dir.rglob("*.json"), reverse=True):
        target = copy / path.relative_to(zoo_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    again = build_site(copy, tmp_path / "again", protocol_versions={})
    assert site(again.out) == site(zoo_built.out)
    env = {
        **os.environ,
        "PYTHONHASHSEED": "4321",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import sys; from pathlib import Path; from kdbench.leaderboard import build_site; "
        "build_site(Path(sys.argv[1]), Path(sys.argv[2]), protocol_versions={})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(zoo_dir), str(tmp_path / "fresh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert site(tmp_path / "fresh") == site(zoo_built.out)


def test_the_seed_policy_and_holm_marks_show_on_the_page(tmp_path):
    """A consistent gain over supervised is marked ✱, a noisy one is not; a one-seed row
    sits in its own table body after the ranked rows, and its cell shows no interval but
    names the record's own CI in its tooltip."""
    from kdbench.leaderboard.build import build_site
    from tests.leaderboard.records import make_record, metric, write_records

    def row(method, seed, value):
        return make_record(
            method=method,
            seed=seed,
            subject="shapes-vit-tiny",
            metrics=[metric("acc_1shot", value, headline=True, ci95=0.7)],
        )

    records = []
    for seed, (base, steady, noisy) in enumerate([(50, 55, 40), (52, 57.5, 66), (51, 56, 52)]):
        records += [row("supervised", seed, base), row("kd", seed, steady)]
        records.append(row("rkd", seed, noisy))
    records.append(row("lucky", 0, 99.0))
    write_records(tmp_path / "records", records)
    report = build_site(tmp_path / "records", tmp_path / "site", protocol_versions={})
    (table,) = report.tables
    rows = {r.method: r for r in table.rows}
    assert rows["kd"].deltas["acc_1shot"].significant
    assert not rows["rkd"].deltas["acc_1shot"].significant
    assert rows["lucky"].preliminary and rows["lucky"].rank is None
    assert [r.method for r in table.rows][-1] == "lucky"

    page = parse(report.out / "protocols" / "embedded" / "fewshot.html")
    bodies = page.by_id("t-fewshot-v1").find_all("tbody")
    assert len(bodies) == 2 and bodies[1].attrs.get("class") == "preliminary"
    head, lucky = bodies[1].find_all("tr")
    assert "fewer than 3 seeds" in head.all_text
    cells = {r[1]: r for r in table_cells(page, "t-fewshot-v1")}
    assert cells["kd"][5].endswith("✱") and not cells["rkd"][5].endswith("✱")
    assert cells["lucky"][0] == "prelim." and cells["lucky"][4] == "99.00"
    tooltip = [td.attrs.get("title", "") for td in lucky.find_all("td")]
    assert any("record's own 95% CI" in t and "± 0.70" in t for t in tooltip)

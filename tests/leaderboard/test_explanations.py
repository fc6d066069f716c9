"""What the site says about its numbers: each protocol page opens with the protocol's own
explanation, every metric column has its description, unit and direction (a tooltip and a
legend), blank cells link to their reason, exact quantities have no interval, and the
suites are explained where they are named."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from kdbench.leaderboard.acceptance import is_release, self_reported
from kdbench.leaderboard.build import build_site
from kdbench.leaderboard.catalog import Catalog, suite_setup
from kdbench.leaderboard.formatting import format_number
from kdbench.leaderboard.notes import Notes
from kdbench.leaderboard.prose import render_prose
from kdbench.plugins import get_registry
from kdbench.protocols.base import load_protocol
from kdbench.results import Record
from tests.leaderboard.pages import parse, table_cells
from tests.leaderboard.records import make_record, write_records

STATIC = Path(__file__).resolve().parents[2] / "kdbench" / "leaderboard" / "static"


def _protocol(name: str):
    return load_protocol(get_registry().get("protocols", name))


def _headers(page, table_id: str) -> dict[str, str]:
    """Each header's text (its first word: the metric name) -> its title."""
    table = page.by_id(table_id)
    assert table is not None
    heads = table.find_all("thead")[0].find_all("th")
    return {" ".join(th.all_text.split()).split(" ")[0]: th.attrs.get("title", "") for th in heads}


def test_a_protocol_page_opens_with_the_protocols_explanation(built):
    html = (built.out / "protocols" / "embedded" / "fewshot.html").read_text(encoding="utf-8")
    explanation = _protocol("fewshot").explanation
    assert str(render_prose(explanation)) in html
    section = parse(html).by_id("what-it-measures")
    assert section is not None and "from random weights" in section.all_text
    assert html.index('id="what-it-measures"') < html.index('id="fewshot-v1"')  # it opens


def test_the_fewshot_page_says_why_the_shipped_student_is_ahead(built):
    page = parse(built.out / "protocols" / "embedded" / "fewshot.html")
    text = " ".join(page.by_id("what-it-measures").all_text.split())
    assert "Why the student reference row scores above every distilled row" in text
    assert "trained on far more base images than the base stage allows" in text


def _first_table(page) -> str:
    """The anchor of a page's first leaderboard table."""
    table = next(e for e in page.find_all("table") if e.attrs.get("class") == "lb-table")
    return table.attrs["id"].removeprefix("t-")


def test_every_metric_column_has_a_tooltip_and_a_legend_entry(built):
    page = parse(built.out / "protocols" / "embedded" / "device.html")
    view_id = _first_table(page)
    headers = _headers(page, f"t-{view_id}")
    device = _protocol("device")
    legend = page.by_id(f"legend-{view_id}")
    assert legend is not None and legend.tag == "details"
    legend_text = " ".join(legend.all_text.split())
    for name in ("latency_p50_ms", "params_m", "energy_mj_per_image", "throughput_ips"):
        spec = device.metric(name)
        assert headers[name].startswith(spec.description), name
        assert ("lower is better" in headers[name]) != spec.higher_is_better
        assert f"{name} ★" in legend_text or name in legend_text
        assert spec.description in legend_text
    assert "Unit: ms (milliseconds). Lower is better." in legend_text
    assert "Unit: images/s (images per second). Higher is better." in legend_text


def test_a_protocol_that_is_not_installed_is_not_explained(tmp_path):
    records = [make_record(protocol="mystery", method=m) for m in ("a", "b")]
    write_records(tmp_path / "records", records)
    report = build_site(tmp_path / "records", tmp_path / "site", protocol_versions={})
    page = parse(report.out / "protocols" / "embedded" / "mystery.html")
    assert "is not installed where this site was built" in page.by_id("what-it-measures").all_text
    legend = " ".join(page.by_id("legend-mystery-v1").all_text.split())
    assert "acc_1shot ★ no description: the protocol is not installed" in legend
    assert "Unit: % (percent). Higher is better." in legend


def test_an_exact_quantity_has_no_interval_and_a_measurement_keeps_its_own(built):
    table = next(t for t in built.tables if t.protocol == "device" and t.suite == "embedded")
    teacher = next(r for r in table.rows if r.method == "teacher")
    assert teacher.cells["params_m"].exact and teacher.cells["params_m"].ci95 == 0
    assert not teacher.cells["latency_p50_ms"].exact
    page = parse(built.out / "protocols" / "embedded" / "device.html")
    view = page.by_id(f"t-{_first_table(page)}")
    header = [" ".join(th.all_text.split()) for th in view.find_all("thead")[0].find_all("th")]
    cells = table_cells(page, view.attrs["id"])
    row = next(c for c in cells if c[1].startswith("teacher"))
    params = row[next(i for i, h in enumerate(header) if h.startswith("params_m"))]
    latency = row[next(i for i, h in enumerate(header) if h.startswith("latency_p50_ms"))]
    assert params == format_number(teacher.cells["params_m"].mean)  # no "± 0.00"
    assert latency.startswith(format_number(teacher.cells["latency_p50_ms"].mean) + " ± ")


def test_blank_cells_number_their_reasons_once_per_table():
    notes = Notes("n-t")
    assert [notes.ref("a"), notes.ref("b"), notes.ref("a")] == [1, 2, 1]
    assert notes.items == [(1, "a"), (2, "b")] and notes.anchor(2) == "n-t-2"
    assert not Notes("x")


def test_the_suites_are_explained_where_they_are_named(built):
    page = parse(built.out / "protocols" / "standard" / "fewshot.html")
    line = next(p for p in page.find_all("p") if p.attrs.get("class") == "suite-line")
    assert "real datasets on disk" in line.all_text
    assert line.find_all("a")[0].attrs["href"] == "../../about.html#suite-standard"
    about = parse(built.out / "about.html")
    embedded = " ".join(about.by_id("suite-embedded").all_text.split())
    assert "Shapes world (version 1)" in embedded and "120 base classes" in embedded
    [image] = about.by_id("suite-embedded").find_all("img")
    assert image.attrs["src"] == "static/shapes-world.png" and image.attrs["alt"]
    assert (built.out / "static" / "shapes-world.png").read_bytes() == (
        STATIC / "shapes-world.png"
    ).read_bytes()
    setups = " ".join(about.by_id("data-and-models").all_text.split())
    assert setups  # the heading; the table follows
    table = next(t for t in about.find_all("table") if t.attrs.get("class") == "plain setup-table")
    rows = {r[0].split(" ")[0]: r for r in table_cells_of(table)}
    assert "miniimagenet" in rows["fewshot"][3] and "timm:mobilevit_xs" in rows["fewshot"][4]
    assert rows["distill"][1] == "shapes" and "cub" in rows["distill"][3]


def table_cells_of(table) -> list[list[str]]:
    body = table.find_all("tbody")[0]
    return [
        [" ".join(c.all_text.split()) for c in tr.children if c.tag in {"td", "th"}]
        for tr in body.find_all("tr")
    ]


def test_suite_setup_reads_datasets_and_models_from_a_config():
    config = {
        "base": {"teacher": {"name": "t"}, "student": {"name": "s"}, "dataset": "mini"},
        "novel": {"dataset": "mini"},
        "pool": [{"dataset": "inat"}],
    }
    setup = suite_setup(config)
    assert setup.datasets == ("mini", "inat") and setup.teachers == ("t",)
    assert setup.students == ("s",)
    assert suite_setup({"teacher": {"name": "t"}}).datasets == ("shapes",)


def test_the_catalog_says_which_methods_a_protocol_refuses():
    catalog = Catalog.from_registry()
    assert "reference row of a pretrained model" in catalog.not_applicable(
        "teacher", "distill", None
    )
    assert "architectures, not training recipes" in catalog.not_applicable(
        "kd", "device", "shapes-student"
    )
    assert catalog.not_applicable("kd", "fewshot", "shapes-student") is None
    assert catalog.not_applicable("no-such-method", "device", None) is None  # unknown
    assert Catalog().not_applicable("teacher", "distill", None) is None
    assert Catalog().about("fewshot") is None
    about = catalog.about("fewshot")
    assert about is not None and about.explanation == _protocol("fewshot").explanation


def test_the_contact_sheet_shows_the_current_world():
    """The committed PNG is what ``kdbench world preview`` draws now (remake it with
    ``kdbench world preview --out kdbench/leaderboard/static/shapes-world.png``)."""
    from PIL import Image

    from kdbench.world.preview import contact_sheet
    from kdbench.world.world import ShapesWorld

    fresh = np.asarray(contact_sheet(ShapesWorld(), 0), dtype=np.int16)
    with Image.open(STATIC / "shapes-world.png") as image:
        committed = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert committed.shape == fresh.shape
    # labels are drawn with the installed font; the pictures themselves must match
    differing = np.any(committed != fresh, axis=-1).mean()
    assert differing < 0.02, f"{differing:.1%} of the pixels differ: remake the contact sheet"


def _record(**kdbench) -> Record:
    raw = copy.deepcopy(make_record())
    raw["kdbench"].update(kdbench)
    return Record.model_validate(raw)


def test_self_reported_records_are_the_ones_nobody_can_rebuild():
    assert [is_release(v) for v in ("0.1.0", "1.2", "1.0.post1")] == [True] * 3
    assert not any(is_release(v) for v in ("0.2.0.dev1", "1.0rc1", "1.0+local", "1.0a1", ""))
    assert self_reported(_record()) == []
    assert self_reported(_record(git_dirty=True, git_sha="0123456789abcdef")) == [
        "made from a kdbench checkout 0123456789ab with uncommitted changes"
    ]
    assert self_reported(_record(version="0.2.0.dev3", git_dirty=None, git_sha=None)) == [
        "kdbench 0.2.0.dev3 is not a release"
    ]


def test_self_reported_rows_are_marked_on_the_site(tmp_path):
    dirty = []
    for seed in range(2):
        record = make_record(method="dirty", seed=seed)
        record["kdbench"]["git_dirty"] = True
        dirty.append(record)
    write_records(tmp_path / "records", [*dirty, make_record(method="clean")])
    report = build_site(tmp_path / "records", tmp_path / "site", protocol_versions={}, min_seeds=1)
    rows = {row.method: row for row in report.tables[0].rows}
    assert rows["dirty"].self_reported and not rows["clean"].self_reported
    cells = {
        r[1].split(" ")[0]: r[1]
        for r in table_cells(
            parse(report.out / "protocols" / "embedded" / "fewshot.html"), "t-fewshot-v1"
        )
    }
    assert cells == {"dirty": "dirty self-reported", "clean": "clean"}
    overview = table_cells(parse(report.out / "index.html"), "t-overview-embedded")
    assert [r[0] for r in overview] == [
        "clean · shapes-vit-tiny",
        "dirty · shapes-vit-tiny self-reported",
    ]

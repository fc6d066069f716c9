"""The built site: pages, order, escaping, links, downloads, reports and determinism."""

import csv
import html
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from kdbench.leaderboard.build import MANIFEST, SiteError, build_site, check_site
from tests.leaderboard.conftest import PAYLOAD, sample_records
from tests.leaderboard.pages import parse, table_cells
from tests.leaderboard.records import make_record, write_records

ROOT = Path(__file__).resolve().parents[2]


def _site_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_every_page_download_and_raw_record_is_built(built, sample_dir):
    out = built.out
    for name in (
        "index.html",
        "methods.html",
        "unranked.html",
        "static/tables.js",
        "static/leaderboard.css",
        "data/leaderboard.csv",
        "data/leaderboard.json",
        "data/records.json",
        MANIFEST,
    ):
        assert (out / name).is_file(), name
    for suite in ("embedded", "standard"):
        for protocol in ("distill", "fewshot", "oneclass", "segmentation", "device"):
            assert (out / "protocols" / suite / f"{protocol}.html").is_file()
    for method in ("teacher", "scratch", "method-000", "old-method"):
        assert (out / "methods" / f"{method}.html").is_file()
    records = sorted(sample_dir.rglob("*.json"))
    for path in records:
        relative = path.relative_to(sample_dir).as_posix()
        assert (out / "raw" / relative).read_bytes() == path.read_bytes()
    valid = [p for p in records if p.name != "broken.json"]
    assert len(list((out / "runs").glob("*.html"))) == len(valid)
    manifest = (out / MANIFEST).read_text().splitlines()
    assert manifest == sorted(_site_bytes(out))


def test_links_are_relative_and_resolve(built):
    out = built.out
    external = set()
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for link in re.findall(r'(?:href|src)="([^"]*)"', text):
            link = html.unescape(link)
            if re.match(r"^[a-z]+:", link, re.I) or link.startswith("//"):
                external.add(link)
                continue
            target = link.split("#")[0]
            if target:
                resolved = (page.parent / unquote(target)).resolve()
                assert resolved.is_file(), f"{page.relative_to(out)} links {link}"
                assert out.resolve() in resolved.parents
    assert external == {"https://example.org/p?a=1&b=2"}


def test_tables_are_sorted_by_the_headline_metric_without_javascript(built):
    page = parse(built.out / "protocols" / "embedded" / "fewshot.html")
    rows = table_cells(page, "t-fewshot-v1")
    by_method: dict[str, list[float]] = {}
    for record in sample_records():
        if (record["suite"], record["protocol"]["name"]) == ("embedded", "fewshot") and not (
            record["smoke"]
        ):
            acc = next(m["value"] for m in record["metrics"] if m["name"] == "acc_1shot")
            by_method.setdefault(record["method"]["name"], []).append(acc)
    references = {"teacher", "scratch"}

    def preliminary(method):  # the seed policy: fewer than 3 seeds, listed after the others
        return method not in references and len(by_method[method]) < 3

    expected = sorted(by_method, key=lambda m: (preliminary(m), -statistics.fmean(by_method[m]), m))
    shown = [row[1].removesuffix(" reference") for row in rows]
    assert shown == expected
    ranks = [row[0] for row in rows]
    late = sum(preliminary(m) for m in by_method)
    assert late >= 1 and ranks[-late:] == ["prelim."] * late
    ranked = [r for r in ranks if r not in ("ref", "prelim.")]
    assert ranked == [str(i) for i in range(1, len(expected) - 1 - late)]
    assert ranks.count("ref") == 2
    reference_rows = [
        tr
        for tr in page.by_id("t-fewshot-v1").find_all("tr")
        if tr.attrs.get("class") == "reference"
    ]
    assert {" ".join(tr.all_text.split()).split()[1] for tr in reference_rows} == {
        "teacher",
        "scratch",
    }
    header = page.by_id("t-fewshot-v1").find_all("th")
    sorted_by = [th for th in header if th.attrs.get("aria-sort")]
    assert len(sorted_by) == 1 and sorted_by[0].attrs["aria-sort"] == "descending"
    assert sorted_by[0].all_text.startswith("acc_1shot")


def test_lower_is_better_tables_start_with_the_lowest_and_devices_are_never_mixed(built):
    page = parse(built.out / "protocols" / "embedded" / "device.html")
    tables = [t for t in page.find_all("table") if t.attrs.get("id", "").startswith("t-device")]
    assert len(tables) == 2  # one per fingerprint
    for table in tables:
        rows = table_cells(page, table.attrs["id"])
        latency = [float(r[4].split()[0]) for r in rows]  # rank, method, student, version
        assert latency == sorted(latency)


def test_null_metrics_show_na_with_the_reason(built):
    text = (built.out / "protocols" / "embedded" / "device.html").read_text()
    found = re.search(
        r'<td class="num na" data-sort="">n/a<sup class="note-ref"><a href="#([^"]+)" '
        r'title="no energy counter on this CPU">(\d+)</a></sup></td>',
        text,
    )
    assert found, "a null metric shows n/a and links to its reason"
    note, number = found.groups()
    assert f'<li id="{note}" value="{number}">no energy counter on this CPU</li>' in text


def test_plugin_text_is_escaped_everywhere(built):
    out = built.out
    pages = [p for p in out.rglob("*.html")]
    seen_as_text = 0
    for path in pages:
        source = path.read_text(encoding="utf-8")
        assert "<script>alert" not in source and "<img src=x" not in source
        tree = parse(source)
        scripts = [s.attrs.get("src", "").rsplit("/", 1)[-1] for s in tree.find_all("script")]
        fronts = path.relative_to(out).parts[0] == "fronts"
        assert scripts == (["tables.js", "budget.js"] if fronts else ["tables.js"])
        images = [img.attrs.get("src") for img in tree.find_all("img")]
        assert images == (["static/shapes-world.png"] if path.name == "about.html" else [])
        for element in tree.find_all("a") + tree.find_all("td") + tree.find_all("th"):
            assert not any(name.startswith("on") for name in element.attrs)
        if PAYLOAD in tree.all_text:
            seen_as_text += 1
    # the method page, its run page, methods.html and the fewshot page at least
    assert seen_as_text >= 4


def test_unranked_records_are_reported_not_ranked(built):
    assert built.intake.reason_counts() == {
        "invalid": 1,
        "failed": 1,
        "smoke": 1,
        "superseded": 1,
        "no-device": 1,
    }
    unranked = (built.out / "unranked.html").read_text()
    for item in built.intake.unranked:
        assert html.escape(item.file.path) in unranked
        assert html.escape(item.detail) in unranked
    distill = (built.out / "protocols" / "embedded" / "distill.html").read_text()
    assert "old-method" not in distill and '1 <span class="badge reason-superseded"' in distill
    fewshot = parse(built.out / "protocols" / "embedded" / "fewshot.html")
    seeds = [row[-1] for row in table_cells(fewshot, "t-fewshot-v1")]
    assert "s7" not in " ".join(seeds)  # the smoke run of method-000
    index = (built.out / "index.html").read_text()
    assert "1 invalid, 1 failed, 1 smoke, 1 superseded, 1 no-device" in index


def test_downloads_hold_the_tables(built):
    rows = list(csv.DictReader(io.StringIO((built.out / "data/leaderboard.csv").read_text())))
    expected = sum(len(t.rows) * len(t.columns) for t in built.tables)
    assert len(rows) == expected
    data = json.loads((built.out / "data/leaderboard.json").read_text())
    assert len(data["rows"]) == expected and data["records_up_to"] == "2026-01-01 00:00 UTC"
    table = next(t for t in built.tables if (t.suite, t.protocol) == ("embedded", "fewshot"))
    leader = table.leaders[0]
    cell = leader.cells["acc_1shot"]
    hit = [
        r
        for r in rows
        if (r["suite"], r["protocol"], r["method"], r["metric"])
        == ("embedded", "fewshot", leader.method, "acc_1shot")
    ]
    assert len(hit) == 1
    assert float(hit[0]["mean"]) == cell.mean and float(hit[0]["ci95"]) == cell.ci95
    assert hit[0]["rank"] == "1" and hit[0]["sort_metric"] == "true" and hit[0]["seeds"] == "3"
    as_json = next(
        r
        for r in data["rows"]
        if r["method"] == leader.method
        and r["metric"] == "acc_1shot"
        and r["protocol"] == "fewshot"
        and r["suite"] == "embedded"
    )
    assert as_json["mean"] == cell.mean and as_json["rank"] == 1
    energy = [r for r in rows if r["metric"] == "energy_mj_per_image" and r["mean"] == ""]
    assert energy and all(r["reason"] == "no energy counter on this CPU" for r in energy)
    listing = json.loads((built.out / "data/records.json").read_text())["records"]
    assert len(listing) == len(built.intake.files)
    assert {r["reason"] for r in listing if not r["ranked"]} == set(built.intake.reason_counts())
    assert all((built.out / r["raw"]).is_file() for r in listing)


def test_score_tables_get_cost_plots_per_device(built):
    page = (built.out / "fronts" / "embedded" / "fewshot.html").read_text()
    tree = parse(page)
    svgs = tree.find_all("svg")
    # parameters and FLOPs once, latency on two devices, energy on the GPU only
    assert len(svgs) == 5
    assert "No energy measured for these backbones on Test CPU 8-core" in page
    assert page.count('class="frontier"') + page.count('class="mark front"') >= 5
    protocol_page = (built.out / "protocols" / "embedded" / "fewshot.html").read_text()
    assert 'href="../../fronts/embedded/fewshot.html#fewshot-v1"' in protocol_page
    assert not (built.out / "fronts" / "embedded" / "device.html").exists()
    device_page = parse(built.out / "protocols" / "embedded" / "device.html")
    assert all(svg.attrs.get("class") == "dots" for svg in device_page.find_all("svg"))


def test_a_table_with_no_device_record_says_so(tmp_path):
    write_records(tmp_path / "records", [make_record(method="a"), make_record(method="b")])
    report = build_site(tmp_path / "records", tmp_path / "site", protocol_versions={})
    page = (report.out / "protocols" / "embedded" / "fewshot.html").read_text()
    assert 'class="plot"' not in page  # no cost plot (the dot-and-whisker chart stays)
    assert "No <code>device</code> record of the embedded suite measured the backbones" in page


def test_the_same_records_give_the_same_bytes(built, sample_dir, tmp_path):
    copy = tmp_path / "elsewhere" / "records"
    for path in sorted(sample_dir.rglob("*.json"), reverse=True):
        target = copy / path.relative_to(sample_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    again = build_site(copy, tmp_path / "again", protocol_versions={})
    assert _site_bytes(again.out) == _site_bytes(built.out)


def test_a_fresh_interpreter_builds_the_same_bytes(built, sample_dir, tmp_path):
    """Another hash seed changes set and dict-of-hash orders; the bytes must not change."""
    env = {
        **os.environ,
        "PYTHONHASHSEED": "12345",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "site"
    code = (
        "import sys; from pathlib import Path; from kdbench.leaderboard import build_site; "
        "build_site(Path(sys.argv[1]), Path(sys.argv[2]), protocol_versions={})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(sample_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _site_bytes(out) == _site_bytes(built.out)


def test_check_finds_changed_missing_and_extra_files(built, sample_dir, tmp_path):
    out = tmp_path / "site"
    shutil.copytree(built.out, out)
    assert check_site(sample_dir, out, protocol_versions={}).up_to_date
    (out / "index.html").write_text("edited")
    (out / "methods.html").unlink()
    (out / "notes.txt").write_text("hello")
    report = check_site(sample_dir, out, protocol_versions={})
    assert not report.up_to_date
    assert (report.differing, report.missing, report.extra) == (
        ["index.html"],
        ["methods.html"],
        ["notes.txt"],
    )
    assert (out / "index.html").read_text() == "edited"  # a check writes nothing


def test_rebuild_removes_stale_pages_and_keeps_unchanged_files(tmp_path):
    records = tmp_path / "records"
    paths = write_records(records, [make_record(method=m) for m in ("a", "b", "c")])
    out = tmp_path / "site"
    first = build_site(records, out, protocol_versions={})
    assert first.written == first.files
    again = build_site(records, out, protocol_versions={})
    assert again.written == 0 and again.removed == []
    run_id = json.loads(paths[1].read_text())["run_id"]
    paths[1].unlink()
    third = build_site(records, out, protocol_versions={})
    assert f"runs/{run_id}.html" in third.removed and "methods/b.html" in third.removed
    assert f"raw/{paths[1].relative_to(records).as_posix()}" in third.removed
    assert check_site(records, out, protocol_versions={}).up_to_date


def test_a_folder_the_build_did_not_write_is_refused(tmp_path):
    write_records(tmp_path / "records", [make_record()])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(SiteError, match="not empty and was not built"):
        build_site(tmp_path / "records", tmp_path / "mine", protocol_versions={})
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_a_missing_records_folder_is_an_error(tmp_path):
    with pytest.raises(SiteError, match=r"records folder .*nowhere does not exist"):
        build_site(tmp_path / "nowhere", tmp_path / "site", protocol_versions={})


def test_an_empty_records_folder_builds_an_empty_site(tmp_path):
    (tmp_path / "records").mkdir()
    report = build_site(tmp_path / "records", tmp_path / "site", protocol_versions={})
    assert report.tables == []
    assert "No records yet" in (tmp_path / "site" / "index.html").read_text()


def test_a_site_inside_its_records_folder_is_not_read_back(tmp_path):
    records = tmp_path / "records"
    write_records(records, [make_record(method="a")])
    first = build_site(records, records / "site", protocol_versions={})
    again = build_site(records, records / "site", protocol_versions={})
    assert len(first.intake.files) == len(again.intake.files) == 1
    assert again.written == 0


def test_two_datasets_are_two_tables_each_saying_its_dataset(tmp_path):
    records = []
    for name, digest in (("cub", "a" * 64), ("dtd", "b" * 64)):
        for method in ("kd", "supervised"):
            record = make_record(method=method, suite="standard", protocol="distill")
            record["dataset"] = {"name": name, "manifest_sha256": digest, "sizes": {}}
            record["run_id"] = f"{name}-{method}"
            records.append(record)
    for record in records:  # one folder per dataset, as runs write them
        folder = tmp_path / "records" / record["dataset"]["name"]
        write_records(folder, [record])
    report = build_site(tmp_path / "records", tmp_path / "site", protocol_versions={})
    page = (report.out / "protocols" / "standard" / "distill.html").read_text()
    blocks = re.findall(r'<section class="table-block" id="([^"]+)">', page)
    assert len(blocks) == 2 and len(set(blocks)) == 2
    assert "dataset <strong>cub (manifest aaaaaaaa)</strong>" in page
    assert "dataset <strong>dtd (manifest bbbbbbbb)</strong>" in page
    index = (report.out / "index.html").read_text()  # the suite's overview: a column each
    assert "cub (manifest aaaaaaaa)" in index and "dtd (manifest bbbbbbbb)" in index
    rows = list(csv.DictReader(io.StringIO((report.out / "data/leaderboard.csv").read_text())))
    assert {r["dataset"] for r in rows} == {"cub:aaaaaaaaaaaa", "dtd:bbbbbbbbbbbb"}


def _site_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux")
def test_run_pages_rendered_by_workers_are_the_pages_this_process_renders(tmp_path, monkeypatch):
    from kdbench.leaderboard import run_pages

    records = tmp_path / "records"
    write_records(records, sample_records())
    monkeypatch.setattr(run_pages, "PARALLEL_RUN_PAGES", 1)
    monkeypatch.setenv("KDBENCH_SITE_WORKERS", "0")
    build_site(records, tmp_path / "serial")
    monkeypatch.setenv("KDBENCH_SITE_WORKERS", "2")
    report = build_site(records, tmp_path / "forked")
    serial, forked = _site_bytes(tmp_path / "serial"), _site_bytes(tmp_path / "forked")
    assert sum(name.startswith("runs/") for name in forked) == len(report.intake.files)
    assert forked == serial
    monkeypatch.setenv("KDBENCH_SITE_WORKERS", "two")
    with pytest.raises(SiteError, match="KDBENCH_SITE_WORKERS='two'"):
        build_site(records, tmp_path / "again")

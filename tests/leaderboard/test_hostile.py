"""A pull request with records (and a committed site/) is untrusted: what it cannot do.

Each test prepares what a hostile contributor could commit, then builds, and checks that
nothing outside --out is written, read into the site or deleted, that the build finishes
with every bad file reported, and that nothing invalid is ranked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading

import pytest
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.leaderboard import build as build_module
from kdbench.leaderboard.build import MANIFEST, SiteError, build_site, check_site
from kdbench.results import MAX_RECORD_BYTES
from tests.helpers import lock_folder
from tests.leaderboard.records import make_record, metric, write_records

TOY = "toy-protocol"  # no plugin registers it, so the registry cannot change the ranking


def _records(folder, *extra, methods=("a", "b")):
    write_records(folder, [*(make_record(protocol=TOY, method=m) for m in methods), *extra])
    return folder


def _build(records, out):
    # one seed per row: the tests are about text, not the seed policy
    return build_site(records, out, protocol_versions={}, min_seeds=1)


def _site_text(out) -> str:
    chunks = []
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.is_symlink():
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def _tree(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def victim(tmp_path):
    """Files outside every folder the build is given, which must stay as they are."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("precious")
    (folder / "secret.json").write_text(json.dumps(make_record(protocol=TOY, method="SECRET")))
    return folder


# -- the site folder ------------------------------------------------------------------------


def test_manifest_entries_outside_the_folder_are_ignored_not_deleted(tmp_path, victim):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    _build(records, out)
    escaping = [
        "../outside/precious.txt",
        str(victim / "precious.txt"),
        "raw/../../outside/precious.txt",
        "./index.html",
        "methods//a.html",
    ]
    with (out / MANIFEST).open("a") as handle:
        handle.write("\n".join(escaping) + "\n")
    report = _build(records, out)
    assert (victim / "precious.txt").read_text() == "precious"
    assert len([w for w in report.warnings if "ignored the entry" in w]) == len(escaping)
    assert check_site(records, out, protocol_versions={}, min_seeds=1).up_to_date


def test_a_manifest_entry_through_a_linked_folder_is_ignored(tmp_path, victim):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    _build(records, out)
    (out / "through").symlink_to(victim)
    with (out / MANIFEST).open("a") as handle:
        handle.write("through/precious.txt\n")
    report = _build(records, out)
    assert (victim / "precious.txt").read_text() == "precious"
    assert any("through/precious.txt" in w for w in report.warnings)
    assert not (out / "through").exists() and not (out / "through").is_symlink()


@pytest.mark.parametrize("page", ["index.html", MANIFEST, "static/tables.js"])
def test_a_linked_page_is_replaced_never_written_through(tmp_path, victim, page):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    _build(records, out)
    target = victim / "precious.txt"
    (out / page).unlink()
    (out / page).symlink_to(target)
    if page == MANIFEST:
        with pytest.raises(SiteError, match="not a regular file"):
            _build(records, out)
    else:
        _build(records, out)
        assert not (out / page).is_symlink() and (out / page).stat().st_size > 8
    assert target.read_text() == "precious"


def test_a_linked_sub_folder_is_replaced_never_written_through(tmp_path, victim):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    _build(records, out)
    before = _tree(victim)
    os.rename(out / "methods", tmp_path / "moved")
    (out / "methods").symlink_to(victim)
    _build(records, out)
    assert _tree(victim) == before
    assert (out / "methods").is_dir() and not (out / "methods").is_symlink()
    assert (out / "methods" / "a.html").is_file()


def test_an_out_folder_that_is_a_link_is_refused(tmp_path, victim):
    records = _records(tmp_path / "records")
    (tmp_path / "site").symlink_to(victim, target_is_directory=True)
    with pytest.raises(SiteError, match="symbolic link"):
        _build(records, tmp_path / "site")
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt", "secret.json"]


def test_files_no_build_wrote_are_kept_and_links_among_them_dropped(tmp_path, victim):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    _build(records, out)
    (out / "CNAME").write_text("example.org\n")
    (out / "extra").mkdir()
    (out / "extra" / "notes.md").write_text("mine")
    (out / "passwd").symlink_to(victim / "precious.txt")
    report = _build(records, out)
    assert (out / "CNAME").read_text() == "example.org\n"
    assert (out / "extra" / "notes.md").read_text() == "mine"
    assert not os.path.lexists(out / "passwd")
    assert any("passwd" in w and "holds no links" in w for w in report.warnings)
    assert (victim / "precious.txt").read_text() == "precious"


def test_an_interrupted_first_build_does_not_block_the_next(tmp_path, monkeypatch):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    real_write = build_module._Staging.write
    calls = []

    def interrupted(self, name, data):
        calls.append(name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        real_write(self, name, data)

    monkeypatch.setattr(build_module._Staging, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(records, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]  # no half-built folder
    monkeypatch.setattr(build_module._Staging, "write", real_write)
    report = _build(records, out)
    assert report.written == report.files and not report.warnings


def test_an_interrupted_rebuild_leaves_the_old_site_as_it_was(tmp_path, monkeypatch):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    _build(records, out)
    before = _tree(out)
    write_records(records, [make_record(protocol=TOY, method="c")])
    real_rename = os.rename
    renames = []

    def failing_rename(source, target):
        renames.append(target)
        if len(renames) == 2:  # the new site moving in, after the old one moved aside
            raise KeyboardInterrupt
        real_rename(source, target)

    monkeypatch.setattr(build_module.os, "rename", failing_rename)
    with pytest.raises(KeyboardInterrupt):
        _build(records, out)
    monkeypatch.setattr(build_module.os, "rename", real_rename)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records", "site"]


def test_a_build_killed_outright_is_reported_and_does_not_block(tmp_path):
    records, out = _records(tmp_path / "records"), tmp_path / "site"
    left = tmp_path / ".site.kdbench-staging-x1y2"
    left.mkdir()
    (left / "index.html").write_text("half")
    report = _build(records, out)
    assert report.written == report.files
    assert report.warnings == [f"{left} was left by an interrupted build; remove it"]


def test_a_read_only_place_is_one_error_not_a_traceback(tmp_path, monkeypatch):
    records = _records(tmp_path / "records")

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build_module.tempfile, "mkdtemp", no_space)
    result = CliRunner().invoke(
        app, ["leaderboard", "build", "--records", str(records), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 2
    assert "error: cannot write beside --out" in result.stderr
    assert "No space left on device" in result.stderr


# -- the records folder ---------------------------------------------------------------------


def test_linked_records_are_reported_and_never_published(tmp_path, victim):
    records = _records(tmp_path / "records")
    folder = records / "embedded" / TOY
    (folder / "stolen.json").symlink_to(victim / "secret.json")
    (folder / "zero.json").symlink_to("/dev/zero")
    (folder / "linked-folder").symlink_to(victim, target_is_directory=True)
    out = tmp_path / "site"
    report = _build(records, out)
    reasons = {u.file.path.rsplit("/", 1)[-1]: u for u in report.intake.unranked}
    assert {"stolen.json", "zero.json", "linked-folder"} <= set(reasons)
    assert all(u.reason == "invalid" and u.file.raw is None for u in reasons.values())
    assert "symbolic link" in reasons["stolen.json"].detail
    assert "SECRET" not in _site_text(out)
    assert not (out / "raw" / "embedded" / TOY / "stolen.json").exists()
    assert [f.record.method.name for f in report.intake.ranked] == ["a", "b"]


def test_a_named_pipe_does_not_hang_the_build(tmp_path):
    records = _records(tmp_path / "records")
    os.mkfifo(records / "pipe.json")
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=_build(records, tmp_path / "s")))
    thread.daemon = True
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the build blocked on a named pipe"
    (item,) = result["r"].intake.unranked
    assert item.file.path == "pipe.json" and "named pipe" in item.detail


def test_a_huge_record_is_refused_without_reading_it(tmp_path):
    records = _records(tmp_path / "records")
    with (records / "huge.json").open("wb") as handle:
        handle.truncate(MAX_RECORD_BYTES + 1)  # sparse: costs no disk
    report = _build(records, tmp_path / "site")
    (item,) = report.intake.unranked
    assert "over the limit" in item.detail and item.file.raw is None


def test_an_unreadable_sub_folder_is_reported(tmp_path, monkeypatch):
    records = _records(tmp_path / "records")
    locked = records / "locked"
    locked.mkdir()
    (locked / "hidden.json").write_text("{}")
    lock_folder(monkeypatch, locked)
    report = _build(records, tmp_path / "site")
    (item,) = report.intake.unranked
    assert item.file.path == "locked" and item.detail.startswith("(folder): cannot be read")


def test_odd_record_file_names_are_reported_not_crashing_the_build(tmp_path):
    records = _records(tmp_path / "records")
    body = json.dumps(make_record(protocol=TOY, method="odd"))
    (records / os.fsdecode(b"latin\xe9.json")).write_text(body)
    (records / "line\nbreak.json").write_text(body)
    (records / "\x1b[2Jclear.json").write_text(body)
    report = _build(records, tmp_path / "site")
    problems = sorted(u.file.path for u in report.intake.unranked)
    assert problems == ["\\x1b[2Jclear.json", "latin\\xe9.json", "line\\x0abreak.json"]


# -- what the site shows --------------------------------------------------------------------


def test_formula_cells_are_neutralised_and_numbers_stay_numbers(tmp_path):
    hostile = make_record(
        protocol=TOY,
        method="=cmd|' /C calc'!A0",
        method_version='=HYPERLINK("http://x","y")',
        metrics=[metric("@score", -1.5, headline=True, unit="+%")],
    )
    records = _records(tmp_path / "records", hostile, methods=())
    out = tmp_path / "site"
    _build(records, out)
    rows = list(csv.DictReader(io.StringIO((out / "data" / "leaderboard.csv").read_text())))
    (row,) = rows
    assert row["method"] == "'=cmd|' /C calc'!A0"
    assert row["method_version"].startswith("'=HYPERLINK")
    assert row["metric"] == "'@score" and row["unit"] == "'+%"
    assert row["mean"] == "-1.5" and row["ci95"] == "" and row["record_ci95"] == "0.5"


def test_a_name_shaped_like_a_page_name_does_not_take_that_page(tmp_path):
    records = _records(
        tmp_path / "records",
        make_record(protocol=TOY, method="MyKD"),
        make_record(protocol=TOY, method="mykd-10cf0255"),
        methods=(),
    )
    out = tmp_path / "site"
    report = _build(records, out)
    pages = {n: report.intake.pages().method(n) for n in ("MyKD", "mykd-10cf0255")}
    assert len(set(pages.values())) == 2
    assert pages["MyKD"] == "methods/mykd-10cf0255.html"
    for name, page in pages.items():
        assert f"<title>{name} " in (out / page).read_text()


def test_records_that_validate_build_even_at_the_limits(tmp_path):
    big = make_record(
        protocol=TOY,
        method="big",
        metrics=[metric("score", 1e100, headline=True), metric("other", -1e100)],
        created_at="2026-01-01T05:00:00+05:00",
    )
    naive_era = make_record(protocol=TOY, method="z", created_at="2026-01-02T00:00:00Z")
    records = _records(tmp_path / "records", big, naive_era, methods=())
    with (records / "embedded" / TOY / "big-v1-seed1.json").open("w") as handle:
        json.dump({**big, "seed": 1, "run_id": "big-1"}, handle)
    report = _build(records, tmp_path / "site")
    assert not report.intake.unranked and len(report.intake.ranked) == 3
    (table,) = report.tables
    assert table.rows[0].cells["score"].mean == 1e100


def test_build_output_shows_escape_codes_as_text(tmp_path):
    records = _records(tmp_path / "records")
    bad = make_record(protocol=TOY, method="x", status="failed")
    bad["error"]["message"] = "\x1b]0;owned\x07\x1b[2J"
    write_records(records, [bad])
    result = CliRunner().invoke(
        app, ["leaderboard", "build", "--records", str(records), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;owned\\x07" in result.stderr


def test_a_hostile_student_name_is_text_everywhere_and_never_a_formula(tmp_path):
    from tests.leaderboard.conftest import PAYLOAD
    from tests.leaderboard.pages import parse

    formula = '=HYPERLINK("http://x","y")'
    records = [
        make_record(method=method, subject=student, seed=seed)
        for method in ("supervised", "kd")
        for student in (PAYLOAD, formula)
        for seed in (0, 1)
    ]
    records += [
        make_record(protocol="device", method="student", subject=student, reference=True, seed=seed)
        for student in (PAYLOAD, formula)
        for seed in (0,)
    ]
    write_records(tmp_path / "records", records)
    out = tmp_path / "site"
    report = _build(tmp_path / "records", out)
    assert not report.intake.unranked and len(report.intake.ranked) == len(records)
    fewshot = next(t for t in report.tables if t.protocol == "fewshot")
    assert sorted(r.student for r in fewshot.rows) == sorted([PAYLOAD, formula] * 2)
    pages = {
        "protocol": out / "protocols" / "embedded" / "fewshot.html",
        "fronts": out / "fronts" / "embedded" / "fewshot.html",
        "method": out / "methods" / "kd.html",
    }
    for name, path in pages.items():
        source = path.read_text(encoding="utf-8")
        assert "<script>alert" not in source and "<img src=x" not in source, name
        tree = parse(source)
        assert not tree.find_all("img") and all(s.attrs.get("src") for s in tree.find_all("script"))
        assert PAYLOAD in tree.all_text, name
    protocol = parse(pages["protocol"])
    rows = protocol.by_id("t-fewshot-v1").find_all("tbody")[0].find_all("tr")
    assert {tr.attrs["data-student"] for tr in rows} == {PAYLOAD, formula}
    options = [o.attrs["value"] for o in protocol.find_all("option")]
    assert f"@{PAYLOAD}" in options and f"@{formula}" in options
    svg = pages["fronts"].read_text(encoding="utf-8")
    assert "kd · &lt;script&gt;alert(" in svg  # the point label, escaped
    runs = list((out / "runs").glob("*.html"))
    assert any(PAYLOAD in parse(p).all_text for p in runs)
    rows = list(csv.DictReader(io.StringIO((out / "data" / "leaderboard.csv").read_text())))
    students = {r["student"] for r in rows}
    assert students == {PAYLOAD, "'" + formula}
    baselines = {r["baseline"] for r in rows if r["baseline"]}
    assert baselines == {f"supervised · {PAYLOAD} 0.1.0", f"supervised · {formula} 0.1.0"}

"""``kdbench leaderboard build`` and ``serve``: exit codes and messages."""

import threading
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.leaderboard.serve import preview_server
from tests.leaderboard.records import make_record, write_records

# a protocol name no plugin registers, so the registry cannot change these records' ranking
TOY = "toy-protocol"


def _records(folder, *extra):
    write_records(
        folder,
        [make_record(protocol=TOY, method="a"), make_record(protocol=TOY, method="b"), *extra],
    )
    return folder


def _invoke(*args):
    return CliRunner().invoke(app, ["leaderboard", *map(str, args)])


def test_build_writes_the_site_and_reports_unranked_records(tmp_path):
    records = _records(tmp_path / "records", make_record(protocol=TOY, method="c", smoke=True))
    (records / "bad.json").write_text("[]")
    result = _invoke("build", "--records", records, "--out", tmp_path / "site")
    assert result.exit_code == 0, result.output
    assert "4 record file(s): 2 ranked, 2 not ranked (1 invalid, 1 smoke); 1 table(s)" in (
        result.stdout
    )
    assert "not ranked (invalid): bad.json: (file): a record is a JSON object" in result.stderr
    assert "not ranked (smoke): embedded/toy-protocol/c-v1-seed0.smoke.json" in result.stderr
    assert (tmp_path / "site" / "protocols" / "embedded" / f"{TOY}.html").is_file()


def test_long_lists_of_unranked_records_are_cut_short(tmp_path):
    smoke = [make_record(protocol=TOY, method=f"s{i}", smoke=True) for i in range(25)]
    records = _records(tmp_path / "records", *smoke)
    result = _invoke("build", "--records", records, "--out", tmp_path / "site")
    assert result.exit_code == 0
    assert result.stderr.count("not ranked (smoke): embedded/") == 20
    assert "not ranked (smoke): ... and 5 more (all are listed on unranked.html)" in result.stderr


def test_a_missing_records_folder_is_one_line_and_exit_2(tmp_path):
    result = _invoke("build", "--records", tmp_path / "nowhere", "--out", tmp_path / "site")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: records folder {tmp_path / 'nowhere'} does not exist (pass --records FOLDER)"
    ]
    assert not (tmp_path / "site").exists()


def test_an_unsafe_out_folder_is_exit_2(tmp_path):
    records = _records(tmp_path / "records")
    result = _invoke("build", "--records", records, "--out", records)
    assert result.exit_code == 2
    assert "is not empty and was not built by kdbench leaderboard build" in result.stderr


def test_check_passes_on_a_fresh_site_and_lists_what_is_stale(tmp_path):
    records = _records(tmp_path / "records")
    out = tmp_path / "site"
    assert _invoke("build", "--records", records, "--out", out).exit_code == 0
    fresh = _invoke("build", "--records", records, "--out", out, "--check")
    assert fresh.exit_code == 0 and f"{out}/ is up to date" in fresh.stdout
    write_records(records, [make_record(protocol=TOY, method="new")])
    stale = _invoke("build", "--records", records, "--out", out, "--check")
    assert stale.exit_code == 1
    assert f"differs: {out / 'index.html'}" in stale.stdout
    assert f"missing: {out / 'methods' / 'new.html'}" in stale.stdout
    assert "is out of date" in stale.stderr and "kdbench leaderboard build --records" in (
        stale.stderr
    )
    assert not (out / "methods" / "new.html").exists()


def test_check_of_a_missing_site_fails(tmp_path):
    records = _records(tmp_path / "records")
    result = _invoke("build", "--records", records, "--out", tmp_path / "none", "--check")
    assert result.exit_code == 1 and "missing:" in result.stdout


def test_serve_needs_a_built_site(tmp_path):
    result = _invoke("serve", "--dir", tmp_path)
    assert result.exit_code == 2
    assert "has no index.html; build the site first" in result.stderr


def test_preview_server_serves_the_site(tmp_path):
    records = _records(tmp_path / "records")
    assert _invoke("build", "--records", records, "--out", tmp_path / "site").exit_code == 0
    server = preview_server(tmp_path / "site", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=5) as response:
            assert b"kdbench leaderboard" in response.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert host == "127.0.0.1"


def test_preview_server_refuses_a_folder_without_a_site(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no index\.html"):
        preview_server(tmp_path)


def test_preview_server_never_serves_through_a_link(tmp_path):
    records = _records(tmp_path / "records")
    assert _invoke("build", "--records", records, "--out", tmp_path / "site").exit_code == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    (tmp_path / "site" / "leak.txt").symlink_to(secret)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "page.html").write_text("outside")
    (tmp_path / "site" / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    server = preview_server(tmp_path / "site", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        for path in ("leak.txt", "linked/page.html", "../secret.txt", "%2e%2e/secret.txt"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://{host}:{port}/{path}", timeout=5)
            assert refused.value.code == 404, path
        with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=5) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

import json

from kdbench.leaderboard.intake import (
    REASONS,
    current_versions,
    read_record_files,
    registered_protocol_versions,
    screen,
)
from kdbench.plugins import temporary_plugin
from kdbench.results import Record
from tests import helpers
from tests.leaderboard.records import make_record, write_records


def _screen(tmp_path, records, registered=None, extra_files=()):
    write_records(tmp_path, records)
    for name, text in extra_files:
        (tmp_path / name).write_text(text, encoding="utf-8")
    return screen(read_record_files(tmp_path), registered or {})


def _reasons(intake):
    return {u.file.path.rsplit("/", 1)[-1]: u.reason for u in intake.unranked}


def test_each_unrankable_record_is_kept_with_its_reason(tmp_path):
    intake = _screen(
        tmp_path,
        [
            make_record(method="good"),
            make_record(method="smoky", smoke=True),
            make_record(method="broke", status="failed"),
            {**make_record(method="blind", protocol="device"), "device_fingerprint": None},
        ],
        extra_files=[("junk.json", "{nope"), ("latin.json", "")],
    )
    assert [f.record.method.name for f in intake.ranked] == ["good"]
    reasons = _reasons(intake)
    assert reasons["junk.json"] == "invalid"
    assert reasons["latin.json"] == "invalid"
    assert reasons["smoky-v1-seed0.smoke.json"] == "smoke"
    assert reasons["broke-v1-seed0.json"] == "failed"
    assert any(r == "no-device" for r in reasons.values())
    failed = next(u for u in intake.unranked if u.reason == "failed")
    assert "FloatingPointError: loss became NaN" in failed.detail
    invalid = next(u for u in intake.unranked if u.file.path == "junk.json")
    assert "not valid JSON" in invalid.detail and invalid.file.raw == b"{nope"
    assert intake.reason_counts() == {"invalid": 2, "failed": 1, "smoke": 1, "no-device": 1}
    assert set(intake.reason_counts()) <= set(REASONS)


def test_a_schema_problem_names_the_field(tmp_path):
    record = make_record()
    record["seed"] = -1
    intake = _screen(tmp_path, [], extra_files=[("neg.json", json.dumps(record))])
    (item,) = intake.unranked
    assert item.reason == "invalid" and item.detail.startswith("seed:")


def test_lower_protocol_versions_are_superseded_by_the_highest(tmp_path):
    intake = _screen(
        tmp_path,
        [
            make_record(method="a", version=1),
            make_record(method="a", version=2),
            make_record(method="b", version=3, smoke=True),  # smoke does not supersede
        ],
    )
    assert intake.current_versions == {"fewshot": 2}
    assert [(f.record.protocol.version) for f in intake.ranked] == [2]
    superseded = [u for u in intake.unranked if u.reason == "superseded"]
    assert len(superseded) == 1
    assert superseded[0].detail == "fewshot@1; the current version is fewshot@2"


def test_the_registered_version_wins_over_the_records(tmp_path):
    intake = _screen(
        tmp_path,
        [make_record(method="a", version=1), make_record(method="a", version=2)],
        registered={"fewshot": 1, "other": 5},
    )
    assert intake.current_versions == {"fewshot": 1}
    assert [u.reason for u in intake.unranked] == ["newer-protocol"]
    assert "upgrade kdbench" in intake.unranked[0].detail


def test_registered_protocol_versions_come_from_the_plugins():
    with temporary_plugin(helpers.TestPlugin()):
        assert registered_protocol_versions()["coin"] == 1


def test_current_versions_ignore_failed_records():
    ok = Record.model_validate(make_record(version=1))
    failed = Record.model_validate(make_record(version=4, status="failed"))
    assert current_versions([ok, failed], {}) == {"fewshot": 1}


def test_the_newest_record_of_a_unit_is_used(tmp_path):
    old = make_record(method="a", run_id="old", created_at="2026-01-01T00:00:00Z")
    new = make_record(method="a", run_id="new", created_at="2026-02-01T00:00:00Z")
    write_records(tmp_path / "x", [old])
    write_records(tmp_path / "y", [new])
    intake = screen(read_record_files(tmp_path), {})
    assert [f.record.run_id for f in intake.ranked] == ["new"]
    (dup,) = intake.unranked
    assert dup.reason == "duplicate" and dup.file.record.run_id == "old"
    assert "y/embedded/fewshot" in dup.detail


def test_a_repeated_run_id_is_reported_once_per_extra_file(tmp_path):
    first = make_record(method="a", run_id="same", smoke=True)
    second = make_record(method="b", run_id="same")
    intake = _screen(tmp_path, [first, second])
    assert intake.ranked == []
    assert sorted(u.reason for u in intake.unranked) == ["duplicate", "smoke"]
    assert intake.run_pages() == {intake.files[0].path: "runs/same.html"}


def test_device_records_of_two_devices_are_different_units(tmp_path):
    records = [
        make_record(protocol="device", method="a", fingerprint={"id": "cpu-a"}),
        make_record(protocol="device", method="a", fingerprint={"id": "cpu-b"}),
    ]
    intake = _screen(tmp_path, records)
    assert sorted(f.record.device_fingerprint["id"] for f in intake.ranked) == ["cpu-a", "cpu-b"]


def test_a_file_that_cannot_be_read_is_reported(tmp_path):
    (tmp_path / "folder.json").mkdir()
    (item,) = screen(read_record_files(tmp_path), {}).unranked
    assert item.reason == "invalid" and item.file.raw is None
    assert item.detail.startswith("(file): cannot be read")

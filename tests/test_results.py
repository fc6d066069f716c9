import json

import pytest
from typer.testing import CliRunner

from kdbench import atomic, results
from kdbench.cli import app
from kdbench.results import Record, RecordError, load_record, write_record


def minimal_record(**changes) -> dict:
    config = {"episodes": 100}
    data = {
        "schema_version": 1,
        "run_id": "abc123",
        "created_at": "2026-01-01T00:00:00Z",
        "status": "ok",
        "smoke": False,
        "suite": "embedded",
        "kdbench": {"version": "0.1.0", "git_sha": None, "git_dirty": None},
        "protocol": {
            "name": "fewshot",
            "version": 1,
            "config": config,
            "config_hash": results.config_hash(config),
        },
        "dataset": {"name": "shapes", "version": "1"},
        "method": {"name": "kd", "distribution": "kdbench", "version": "0.1.0"},
        "seed": 0,
        "metrics": [
            {"name": "acc_1shot", "value": 61.5, "ci95": 0.4, "n": 100, "higher_is_better": True}
        ],
        "cost": {"total_seconds": 1.5, "device": "cpu"},
        "environment": {"python": "3.11", "platform": "linux", "torch": "2.5", "devices": ["cpu"]},
    }
    data.update(changes)
    return data


def test_round_trip(tmp_path):
    record = Record.model_validate(minimal_record())
    path = write_record(record, tmp_path / "a" / "r.json")
    again = load_record(path)
    assert again == record
    assert json.loads(path.read_text())["metrics"][0]["value"] == 61.5


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"metrics": [{"name": "a", "value": None, "higher_is_better": True}]},
            "metrics.0",
            "needs a `reason`",
        ),
        ({"status": "done"}, "status", "'ok' or 'failed'"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        (
            {"method": {"name": "x", "distribution": "d", "version": "1", "url": "javascript:x"}},
            "method.url",
            "http",
        ),
    ],
)
def test_validation_errors_name_the_field(tmp_path, change, field, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(minimal_record(**change)))
    with pytest.raises(RecordError) as info:
        load_record(path)
    problems = info.value.problems
    assert any(p.field.startswith(field) and words in p.message for p in problems), problems


def test_nan_is_refused_on_read_and_write(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(minimal_record()).replace("61.5", "NaN"))
    with pytest.raises(RecordError, match="NaN is not allowed"):
        load_record(path)
    with pytest.raises(ValueError, match="finite"):
        Record.model_validate(
            minimal_record(metrics=[{"name": "a", "value": float("nan"), "higher_is_better": True}])
        )


def test_edited_config_is_detected(tmp_path):
    data = minimal_record()
    data["protocol"]["config"]["episodes"] = 5
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="config_hash does not match"):
        load_record(path)


def test_schema_versions_newer_and_unmigratable_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(minimal_record(schema_version=99)))
    with pytest.raises(RecordError, match="newer kdbench"):
        load_record(path)
    path.write_text(json.dumps(minimal_record(schema_version=0)))
    with pytest.raises(RecordError, match="no longer supported"):
        load_record(path)

    # a migration, when one exists, brings old records forward
    def rename_field(data):
        data = dict(data)
        data["run_id"] = data.pop("id")
        data["schema_version"] = 1
        return data

    monkeypatch.setitem(results.MIGRATIONS, 0, rename_field)
    old = minimal_record(schema_version=0)
    old["id"] = old.pop("run_id")
    path.write_text(json.dumps(old))
    assert load_record(path).run_id == "abc123"


def test_atomic_write_keeps_the_old_file_when_a_write_crashes(tmp_path, monkeypatch):
    record = Record.model_validate(minimal_record())
    path = write_record(record, tmp_path / "r.json")
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(atomic.os, "replace", explode)
    changed = Record.model_validate(minimal_record(run_id="new"))
    with pytest.raises(KeyboardInterrupt):
        write_record(changed, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_validate_command_lists_each_bad_file(tmp_path):
    good = tmp_path / "runs" / "good.json"
    good.parent.mkdir()
    good.write_text(json.dumps(minimal_record()))
    bad = tmp_path / "runs" / "sub" / "bad.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(minimal_record(status="weird")))
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(good)])
    assert ok.exit_code == 0 and "1 file(s) checked, 0 invalid" in ok.stdout
    result = runner.invoke(app, ["validate", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert f"{bad}: status:" in result.stderr
    assert "2 file(s) checked, 1 invalid" in result.stdout


def test_schema_command_prints_json_schema():
    result = CliRunner().invoke(app, ["schema"])
    schema = json.loads(result.stdout)
    assert schema["properties"]["schema_version"]["const"] == 1
    assert "metrics" in schema["required"] or "metrics" in schema["properties"]

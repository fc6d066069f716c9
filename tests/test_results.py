import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdbench import atomic, record_files, results
from kdbench.cli import app
from kdbench.errors import RecordError
from kdbench.record_files import load_record, write_record
from kdbench.results import Record
from tests.helpers import lock_folder


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


# -- strict reading (issue 14: items 3, 4, 8, 12, 15) ---------------------------------------


def _load_text(tmp_path, text, name="r.json"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_record(path)


def _problem(tmp_path, text):
    with pytest.raises(RecordError) as info:
        _load_text(tmp_path, text)
    (first, *_) = info.value.problems
    return first


def _metric(**changes):
    return {
        "name": "acc_1shot",
        "value": 61.5,
        "ci95": 0.4,
        "n": 100,
        "higher_is_better": True,
        **changes,
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metrics": [_metric(value="55.5")]}, "metrics.0.value"),
        ({"metrics": [_metric(value=True)]}, "metrics.0.value"),
        ({"metrics": [_metric(higher_is_better="yes")]}, "metrics.0.higher_is_better"),
        ({"metrics": [_metric(n=100.0)]}, "metrics.0.n"),
        ({"smoke": "false"}, "smoke"),
        ({"smoke": 0}, "smoke"),
        ({"seed": 3.0}, "seed"),
        ({"seed": "3"}, "seed"),
        ({"schema_version": True}, "schema_version"),
        ({"method": {"name": "kd", "distribution": "kdbench", "version": 1}}, "method.version"),
        ({"created_at": 1767225600}, "created_at"),
    ],
)
def test_reading_refuses_values_of_the_wrong_type(tmp_path, change, field):
    problem = _problem(tmp_path, json.dumps(minimal_record(**change)))
    assert problem.field == field, problem


def test_kdbench_builds_records_from_python_values_as_before():
    # strictness applies to files; kdbench's own code may still pass e.g. an int for a float
    record = Record.model_validate(minimal_record(metrics=[_metric(value=61)]))
    assert record.metrics[0].value == 61.0


def test_a_repeated_key_is_refused_not_last_one_wins(tmp_path):
    text = json.dumps(minimal_record(status="failed"))[:-1] + ', "status": "ok"}'
    problem = _problem(tmp_path, text)
    assert problem.field == "status" and "twice" in problem.message


def test_created_at_needs_a_timezone_and_is_read_as_utc(tmp_path):
    problem = _problem(tmp_path, json.dumps(minimal_record(created_at="2026-01-01T00:00:00")))
    assert problem.field == "created_at" and "timezone" in problem.message
    record = _load_text(
        tmp_path, json.dumps(minimal_record(created_at="2026-01-01T02:00:00+02:00"))
    )
    assert record.created_at.isoformat() == "2026-01-01T00:00:00+00:00"
    far = json.dumps(minimal_record(created_at="9999-12-31T23:00:00-05:00"))
    assert _problem(tmp_path, far).field == "created_at"


@pytest.mark.parametrize(
    ("text_of", "field"),
    [
        (lambda d: d.replace('"name": "kd"', '"name": "k\\ud800d"'), "method.name"),
        (lambda d: d.replace('"episodes"', '"\\udfffx"'), "protocol.config.\\udfffx"),
    ],
)
def test_a_lone_surrogate_is_refused_where_it_is(tmp_path, text_of, field):
    problem = _problem(tmp_path, text_of(json.dumps(minimal_record())))
    assert (problem.field, problem.message.split(" (")[0]) in {
        (field, "is not valid Unicode text"),
        (field, "the key is not valid Unicode text"),
    }


@pytest.mark.parametrize(
    ("value", "words"),
    [("1.7e308", "magnitude at most 1e+100"), ("1e400", "out of range"), ("-2e100", "magnitude")],
)
def test_absurd_magnitudes_are_refused(tmp_path, value, words):
    text = json.dumps(minimal_record()).replace("61.5", value)
    problem = _problem(tmp_path, text)
    assert words in problem.message


def test_integers_beyond_64_bits_are_refused(tmp_path):
    problem = _problem(tmp_path, json.dumps(minimal_record(seed=2**64)))
    assert problem.field == "seed"


def test_deep_nesting_is_a_reported_error_not_a_crash(tmp_path):
    deep = json.dumps(minimal_record()).replace(
        '"episodes": 100', '"x": ' + "[" * 5000 + "]" * 5000
    )
    assert "nested more than" in _problem(tmp_path, deep).message
    config = {"x": 1}
    for _ in range(100):
        config = {"x": config}
    data = minimal_record()
    data["protocol"] = {**data["protocol"], "config": config}
    problem = _problem(tmp_path, json.dumps(data))
    assert problem.field == "(file)" and "nested more than 64 levels" in problem.message
    data["protocol"]["config"] = {"brackets": "[[[[" * 100}  # inside a string: not nesting
    data["protocol"]["config_hash"] = results.config_hash(data["protocol"]["config"])
    assert load_record(write_record(Record.model_validate(data), tmp_path / "ok.json"))


def test_the_depth_limit_is_exact():
    from kdbench.record_json import MAX_DEPTH
    from kdbench.record_json import too_deep as _too_deep

    def nest(levels: int, inner: str = "1") -> str:
        text = inner
        for level in range(levels):
            text = f'{{"k{level}": {text}}}' if level % 2 else f"[{text}, 2]"
        return text

    assert not _too_deep(nest(MAX_DEPTH))
    assert _too_deep(nest(MAX_DEPTH + 1))
    assert not _too_deep(nest(MAX_DEPTH, '"]]]]' + "[" * 200 + '"'))  # brackets in a string
    assert not _too_deep("[" * 40 + "]" * 40 + "{" * 40 + "}" * 40)  # 80 brackets, depth 40
    assert _too_deep("[" * 40 + "é" + "[" * 40)  # not ASCII outside strings: still judged


@pytest.mark.parametrize(
    ("encode", "words"),
    [
        (lambda t: t.encode("utf-16"), "UTF-16"),
        (lambda t: t.replace("kdbench", "kdbénch").encode("latin-1"), "not UTF-8"),
    ],
)
def test_files_that_are_not_utf8_are_reported(tmp_path, encode, words):
    path = tmp_path / "r.json"
    path.write_bytes(encode(json.dumps(minimal_record())))
    with pytest.raises(RecordError, match=words):
        load_record(path)
    checked, problems = record_files.validate_paths([tmp_path])
    assert checked == 1 and problems[0].field == "(file)"


def test_text_over_its_limit_is_refused_on_read_and_cut_when_built(tmp_path):
    long = "x" * (results.MAX_TEXT_CHARS + 1)
    method = {"name": "kd", "distribution": "kdbench", "version": "0.1.0", "description": long}
    problem = _problem(tmp_path, json.dumps(minimal_record(method=method)))
    assert problem.field == "method.description" and "at most 2000" in problem.message
    built = Record.model_validate(minimal_record(method=method, notes=["y" * 10**6]))
    assert len(built.method.description) == results.MAX_TEXT_CHARS
    assert built.method.description.endswith("…") and len(built.notes[0]) == 2000
    name = Record.model_validate(minimal_record(run_id="r" * 1000)).run_id
    assert len(name) == results.MAX_NAME_CHARS
    # a record kdbench built reads back
    path = write_record(built, tmp_path / "built.json")
    assert load_record(path).method.description == built.method.description


def test_kdbench_replaces_a_lone_surrogate_in_text_it_builds(tmp_path):
    method = {"name": "k\ud800d", "distribution": "kdbench", "version": "0.1.0"}
    record = Record.model_validate(minimal_record(method=method))
    assert record.method.name == "k\ufffdd"
    assert load_record(write_record(record, tmp_path / "r.json")).method.name == "k\ufffdd"


# -- which files are read ----------------------------------------------------------------


def test_a_symlinked_record_is_refused_and_named(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(minimal_record()))
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a.json").symlink_to(secret)
    (runs / "linked").symlink_to(tmp_path)
    checked, problems = record_files.validate_paths([runs])
    assert checked == 1
    by_path = {p.path.name: p for p in problems}
    assert "symbolic link" in by_path["a.json"].message
    assert "symbolic link to a folder" in by_path["linked"].message
    with pytest.raises(RecordError, match="symbolic link"):
        load_record(runs / "a.json")


def test_a_named_pipe_is_reported_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    checked, problems = record_files.validate_paths([tmp_path])
    assert time.monotonic() - started < 5
    assert checked == 1 and "named pipe, not a regular file" in problems[0].message


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(record_files, "MAX_RECORD_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(minimal_record(notes=["x" * 1500])))
    with pytest.raises(RecordError, match="over the limit of 1000 bytes"):
        load_record(path)


def test_a_folder_that_cannot_be_searched_is_a_problem(tmp_path, monkeypatch):
    (tmp_path / "ok.json").write_text(json.dumps(minimal_record()))
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "bad.json").write_text("{}")
    lock_folder(monkeypatch, locked)
    checked, problems = record_files.validate_paths([tmp_path])
    assert checked == 1
    assert [(p.path, p.field) for p in problems] == [(locked, "(folder)")]
    assert "Permission denied" in problems[0].message
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1 and "1 file(s) checked, 1 invalid" in result.stdout


def test_a_file_name_that_is_not_utf8_is_reported(tmp_path):
    name = os.fsdecode(b"bad\xff.json")
    (tmp_path / name).write_text(json.dumps(minimal_record()))
    checked, problems = record_files.validate_paths([tmp_path])
    assert checked == 0
    assert [str(p.path.name) for p in problems] == ["bad\\xff.json"]


def test_validate_prints_escape_codes_as_text(tmp_path):
    (tmp_path / "\x1b[2Jevil.json").write_text(json.dumps(minimal_record(status="\x1b]0;x\x07")))
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[2Jevil.json" in result.stderr


def test_records_state_the_eval_batch_size_and_determinism_flags():
    from kdbench.provenance import environment
    from kdbench.results import Environment
    from kdbench.train import EVAL_BATCH_SIZE

    env = Environment.model_validate(environment())
    assert env.eval_batch_size == EVAL_BATCH_SIZE
    assert env.determinism is not None
    assert set(env.determinism) == {
        "deterministic_algorithms",
        "cudnn_deterministic",
        "cudnn_benchmark",
        "float32_matmul_precision",
    }


_STRICT_CASES = [
    '{"a": 1, "b": [1, 2.5, "x: y"], "c": {"d": null, "e": true}}',
    '{"a": 1, "a": 2}',  # a repeated key
    '{"note": "colons: inside: strings", "x": {"k": 1, "k": 1}}',  # repeated, colons elsewhere
    '{"a": [{"k": 1}, {"k": 2, "k": 3}]}',  # repeated inside a list of objects
    '{"big": 123456789012345678901234567890}',  # beyond 64 bits: an int, not a float
    '{"big": -9223372036854775809, "ok": 9223372036854775807}',
    '{"x": NaN}',
    '{"x": 1e999}',
    '{"x": -1E+400}',
    '{"s": "\\ud800"}',  # a lone surrogate
    '{"s": "\\ud83d\\ude00", "t": "\\u00e9"}',  # a pair and an escape
    '{"x": -0.0, "y": 1E5, "z": 1.0, "w": 0}',
    "[1, 2]",  # not an object
    '{"a": 1,}',  # not JSON
    '{"k\\"ey": {"q": "\\"}:{"}}',  # escaped quotes around brackets and colons
    '{"a": 1, "a": "\\u003a"}',  # a repeated key hidden by an escaped colon
    '{"a": 18446744073709551615, "b": 1.00000000000000000001}',
]


def _strict(text):
    import json

    from kdbench.record_json import _finite_float, _reject_constant, _unique_keys

    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except ValueError:
        return ValueError


def _typed(value):
    """``value`` with the type of every scalar spelled out (1 and 1.0 differ)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("text", _STRICT_CASES)
def test_the_fast_parse_gives_what_the_strict_parse_gives_or_steps_aside(text):
    from kdbench.record_json import _fast_load, _orjson

    if _orjson is None:
        pytest.skip("orjson is not installed: every record is parsed by the standard library")
    fast, strict = _fast_load(text), _strict(text)
    if fast is None:  # the strict parse reads it (and words any problem)
        return
    assert strict is not ValueError, text
    assert _typed(fast) == _typed(strict)


def test_a_repeated_key_is_refused_with_or_without_the_fast_parse(monkeypatch, tmp_path):
    from kdbench import record_files, record_json

    text = json.dumps(minimal_record()).replace('"seed": ', '"seed": 1, "seed": ', 1)
    path = tmp_path / "r.json"
    path.write_text(text)
    for fast in (record_json._orjson, None):
        monkeypatch.setattr(record_json, "_orjson", fast)
        with pytest.raises(RecordError, match="seed: appears twice"):
            record_files.load_record(path)


def test_committed_records_parse_the_same_with_and_without_the_fast_parse(monkeypatch):
    from kdbench import record_files, record_json

    root = Path(__file__).resolve().parents[1] / "leaderboards"
    files = sorted(root.rglob("*.json"))[::7]  # every seventh: each protocol, all sizes
    assert files
    if record_json._orjson is not None:  # kdbench's own records all take the fast path
        texts = [f.read_text() for f in files]
        assert all(record_json._fast_load(t) for t in texts)
    fast = [record_files.load_record(f).model_dump() for f in files]
    monkeypatch.setattr(record_json, "_orjson", None)
    assert fast == [record_files.load_record(f).model_dump() for f in files]

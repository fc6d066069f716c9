"""``kdbench rerun``: a record's unit run again from what the record says."""

import json
import os

import pytest
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.errors import ConfigError
from kdbench.rerun import MetricChange, rerun
from kdbench.runner import plan, run_units


@pytest.fixture(scope="module")
def smoke_record(tmp_path_factory, _smoke_world_weights):
    """One smoke record for the module, made with its own cache and the smoke weights."""
    from kdbench import plugins

    out = tmp_path_factory.mktemp("records")
    saved = {k: os.environ.get(k) for k in ("KDBENCH_CACHE", "KDBENCH_WORLD_WEIGHTS")}
    os.environ["KDBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["KDBENCH_WORLD_WEIGHTS"] = str(_smoke_world_weights)
    try:
        plugins.reset()
        registry = plugins.get_registry()
        units, _ = plan(registry, protocols=["oneclass"], methods=["kd"], smoke=True)
        run_units(units, registry=registry, out=out, device="cpu", progress=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        plugins.reset()
    (path,) = out.rglob("kd-seed0.smoke.json")
    return path


def test_a_rerun_in_an_empty_cache_reproduces_the_record_bit_for_bit(
    smoke_record, _smoke_world_weights, monkeypatch, tmp_path
):
    monkeypatch.setenv("KDBENCH_WORLD_WEIGHTS", str(_smoke_world_weights))
    result = rerun(smoke_record, out=tmp_path, device="cpu", log=lambda _: None)
    assert result.changes and all(c.verdict == "identical" for c in result.changes)
    assert result.new.protocol.config_hash == result.stored.protocol.config_hash
    assert result.new.run_id != result.stored.run_id
    assert list(tmp_path.rglob("*.json"))  # --out keeps the new record


def test_the_command_reports_a_changed_metric_and_refuses_another_version(
    smoke_record, _smoke_world_weights, monkeypatch, tmp_path
):
    monkeypatch.setenv("KDBENCH_WORLD_WEIGHTS", str(_smoke_world_weights))
    edited = json.loads(smoke_record.read_text())
    auroc = next(m for m in edited["metrics"] if m["name"] == "auroc")
    auroc["value"] += 0.25
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(edited))
    result = CliRunner().invoke(
        app, ["rerun", str(path), "--device", "cpu", "--shared-cache", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("auroc "))
    assert "-0.25" in line and line.rstrip().endswith(("outside CI", "differs (no CI)"))
    edited["protocol"]["version"] = 99
    path.write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="version 99"):
        rerun(path, device="cpu", log=lambda _: None)


def test_verdicts():
    assert MetricChange("m", 1.0, 1.0, 0.1).verdict == "identical"
    assert MetricChange("m", 1.0, 1.05, 0.1).verdict == "within CI"
    assert MetricChange("m", 1.0, 1.5, 0.1).verdict == "outside CI"
    assert MetricChange("m", 1.0, 1.5, None).verdict == "differs (no CI)"
    assert MetricChange("m", None, None, None).verdict == "null in both"
    assert MetricChange("m", 1.0, None, None).verdict == "null in one"
    timing = MetricChange("train_seconds", 27.7, 1256.0, None, "s")
    assert timing.verdict == "a timing: not expected to repeat"

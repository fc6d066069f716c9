import json
import re

import pytest
from typer.testing import CliRunner

from kdbench import plugins, runner
from kdbench.cli import app
from kdbench.hookspecs import hookimpl
from kdbench.protocols.base import ConfigError, MetricFamily, MetricSpec, parse_overrides
from kdbench.record_files import load_record
from tests.helpers import CoinProtocol, TestPlugin


@pytest.fixture
def registry():
    CoinProtocol.calls = []
    with plugins.temporary_plugin(TestPlugin(), distribution="tests", version="1") as reg:
        yield reg


def _run(registry, tmp_path, resume="only-missing", **kwargs):
    units, _ = runner.plan(
        registry, protocols=["coin"], methods=["heads", "tails"], seeds=[0, 1], smoke=True, **kwargs
    )
    return runner.run_units(units, registry=registry, out=tmp_path, resume=resume, progress=False)


def test_run_writes_one_valid_record_per_unit(registry, tmp_path):
    report = _run(registry, tmp_path)
    paths = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert paths == [
        "embedded/coin/heads-seed0.smoke.json",
        "embedded/coin/heads-seed1.smoke.json",
        "embedded/coin/tails-seed0.smoke.json",
        "embedded/coin/tails-seed1.smoke.json",
    ]
    record = load_record(tmp_path / paths[0])
    assert record.status == "ok" and record.smoke
    assert record.method.distribution == "tests"
    assert record.components["protocol"].name == "coin"
    assert record.metric("energy").value is None and "sensor" in record.metric("energy").reason
    assert record.environment.torch and record.kdbench.version
    assert not (tmp_path / ".work" / "embedded" / "coin" / "heads-seed0-smoke").exists()
    rows = runner.summary_rows(report)
    assert {(r["method"], r["seeds"]) for r in rows} == {("heads", 2), ("tails", 2)}


def test_resume_only_missing_skips_finished_units(registry, tmp_path):
    _run(registry, tmp_path)
    (tmp_path / "embedded/coin/tails-seed1.smoke.json").unlink()
    CoinProtocol.calls = []
    report = _run(registry, tmp_path)
    assert CoinProtocol.calls == ["tails/1"]
    assert [o.status for o in report.outcomes].count("skipped") == 3
    CoinProtocol.calls = []
    _run(registry, tmp_path, resume="never")
    assert len(CoinProtocol.calls) == 4


def test_changed_config_reruns_only_missing_but_not_always(registry, tmp_path):
    _run(registry, tmp_path)
    CoinProtocol.calls = []
    _run(registry, tmp_path, resume="always", overrides={"coin.flips": 7})
    assert CoinProtocol.calls == []
    _run(registry, tmp_path, resume="only-missing", overrides={"coin.flips": 7})
    assert len(CoinProtocol.calls) == 4
    assert (
        load_record(tmp_path / "embedded/coin/heads-seed0.smoke.json").protocol.config["flips"] == 7
    )


def test_failed_unit_is_recorded_and_others_continue(registry, tmp_path):
    report = _run(registry, tmp_path, overrides={"coin.fail_for": "heads"})
    assert [o.unit.label for o in report.failed] == ["coin/heads/seed0", "coin/heads/seed1"]
    failed = load_record(tmp_path / "embedded/coin/heads-seed0.smoke.failed.json")
    assert failed.status == "failed" and "NaN" in failed.error.message
    assert not (tmp_path / "embedded/coin/heads-seed0.smoke.json").exists()
    assert load_record(tmp_path / "embedded/coin/tails-seed0.smoke.json").status == "ok"
    # a failed unit is not "done": the next only-missing run retries it
    CoinProtocol.calls = []
    _run(registry, tmp_path, overrides={"coin.fail_for": "heads"})
    assert sorted(CoinProtocol.calls) == ["heads/0", "heads/1"]


def test_a_failure_never_replaces_a_finished_record(registry, tmp_path):
    _run(registry, tmp_path)
    good = tmp_path / "embedded/coin/heads-seed0.smoke.json"
    before = good.read_bytes()
    _run(registry, tmp_path, resume="never", overrides={"coin.fail_for": "heads"})
    assert good.read_bytes() == before
    assert (tmp_path / "embedded/coin/heads-seed0.smoke.failed.json").exists()
    _run(registry, tmp_path, resume="never")
    assert not (tmp_path / "embedded/coin/heads-seed0.smoke.failed.json").exists()


def test_corrupt_record_is_rerun(registry, tmp_path, capsys):
    _run(registry, tmp_path)
    path = tmp_path / "embedded/coin/heads-seed0.smoke.json"
    path.write_text("{ truncated")
    CoinProtocol.calls = []
    _run(registry, tmp_path)
    assert CoinProtocol.calls == ["heads/0"]
    assert "not a valid record" in capsys.readouterr().err
    assert load_record(path).status == "ok"


def test_overrides_are_checked():
    assert parse_overrides(["a.b=3", "name=x", "flag=true"]) == {
        "a.b": 3,
        "name": "x",
        "flag": True,
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["novalue"])


def test_unknown_override_key_lists_known_keys(registry):
    with pytest.raises(ConfigError, match="keys here: fail_for, flips"):
        runner.plan(registry, protocols=["coin"], methods=["heads"], overrides={"coin.flops": 1})
    with pytest.raises(ConfigError, match="start the key with a protocol"):
        runner.plan(registry, protocols=["coin"], methods=["heads"], overrides={"flips": 1})


def test_cli_run_prints_a_summary_and_exit_codes(registry, tmp_path):
    cli = CliRunner()
    args = ["run", "-p", "coin", "-m", "heads", "-m", "tails", "--smoke", "-o", str(tmp_path)]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "coin" in result.stdout and "score" in result.stdout and "records in" in result.stdout
    failing = cli.invoke(app, [*args, "--set", "coin.fail_for=tails", "--resume", "never"])
    assert failing.exit_code == 1
    assert "FAILED coin/tails/seed0" in failing.stdout
    unknown = cli.invoke(app, ["run", "-p", "coin", "-m", "head", "-o", str(tmp_path)])
    assert unknown.exit_code == 2 and "Did you mean 'heads'" in unknown.stderr


def test_ls_json_shows_providers(registry):
    result = CliRunner().invoke(app, ["ls", "methods", "--json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["heads"]["distribution"] == "tests" and rows["heads"]["version"] == "1"


class FamilyCoin(CoinProtocol):
    """The coin protocol with one metric per method, declared as a family."""

    metric_families = (MetricFamily("side_", "method", True, "%", description="{member} side"),)

    def run(self, context):
        result = super().run(context)
        result.metrics.append(self.metric(f"side_{context.method.name}")(50.0))
        if context.config["fail_for"] == "undeclared":
            result.metrics.append(MetricSpec("bogus", True)(1.0))
        return result


class FamilyPlugin:
    @hookimpl
    def kdbench_register_protocols(self, register):
        register(FamilyCoin(), name="family-coin")


def test_metrics_of_a_declared_family_are_recorded_and_undeclared_ones_refused(registry, tmp_path):
    with plugins.temporary_plugin(FamilyPlugin(), name="family", distribution="tests") as reg:
        units, _ = runner.plan(reg, protocols=["family-coin"], methods=["heads"], smoke=True)
        report = runner.run_units(units, registry=reg, out=tmp_path / "ok", progress=False)
        assert not report.failed
        [path] = (tmp_path / "ok").rglob("*.json")
        metric = load_record(path).metric("side_heads")
        assert (metric.value, metric.unit, metric.higher_is_better) == (50.0, "%", True)
        units, _ = runner.plan(
            reg,
            protocols=["family-coin"],
            methods=["heads"],
            smoke=True,
            overrides={"family-coin.fail_for": "undeclared"},
        )
        report = runner.run_units(units, registry=reg, out=tmp_path / "bad", progress=False)
        [failed] = report.failed
        assert "returned undeclared metrics ['bogus']" in failed.message


def test_without_progress_bars_each_unit_logs_its_start_and_end(registry, tmp_path):
    units, _ = runner.plan(
        registry,
        protocols=["coin"],
        methods=["heads", "tails"],
        seeds=[0],
        smoke=True,
        overrides={"coin.fail_for": "tails"},
    )
    logged: list[str] = []
    runner.run_units(units, registry=registry, out=tmp_path, progress=False, log=logged.append)
    lines = [line for line in logged if line.startswith("[")]
    assert len(lines) == 4 and lines[0] == "[1/2] coin/heads/seed0 started"
    assert re.fullmatch(
        r"\[1/2\] coin/heads/seed0 finished: ok in \d+\.\d s -> .*heads-seed0\.smoke\.json",
        lines[1],
    )
    assert lines[2] == "[2/2] coin/tails/seed0 started"
    assert re.fullmatch(
        r"\[2/2\] coin/tails/seed0 finished: failed in \d+\.\d s -> .*tails-seed0\.smoke\.failed"
        r"\.json",
        lines[3],
    )

    logged.clear()  # a finished unit is not run again, and says so
    runner.run_units(units[:1], registry=registry, out=tmp_path, progress=False, log=logged.append)
    assert [line.split(" (")[0] for line in logged] == [
        "[1/1] coin/heads/seed0 skipped: already done"
    ]

    logged.clear()  # with progress bars, the bars say it
    runner.run_units(
        units[:1], registry=registry, out=tmp_path, progress=True, resume="never", log=logged.append
    )
    assert not [line for line in logged if line.startswith("[")]

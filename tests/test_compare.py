"""``kdbench compare``: two rows paired over their shared seeds, with their students' costs."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kdbench.cli import app
from kdbench.compare import compare
from kdbench.errors import ConfigError
from tests.leaderboard.records import make_record, metric


def _row(method, student, seed, acc1, acc5):
    record = make_record(
        method=method,
        seed=seed,
        subject=student,
        run_id=f"{method}-{student}-{seed}",
        metrics=[
            metric("acc_1shot", acc1, headline=True),
            metric("acc_5shot", acc5, headline=True),
        ],
    )
    record["components"]["student"] = dict(record["components"]["subject"])
    return record


def _device(student, params, latency):
    record = make_record(
        protocol="device",
        method="student",
        reference=True,
        subject=student,
        run_id=f"device-{student}",
        metrics=[
            metric("latency_p50_ms", latency, higher_is_better=False, unit="ms", headline=True),
            metric("params_m", params, higher_is_better=False, unit="M"),
        ],
    )
    return record


def _write(folder, records):
    for i, record in enumerate(records):
        path = folder / f"r{i}.json"
        path.write_text(json.dumps(record))


@pytest.fixture
def folder(tmp_path):
    _write(
        tmp_path,
        [
            _row("kd", "mvit", 0, 50.0, 70.0),
            _row("kd", "mvit", 1, 52.0, 71.0),
            _row("kd", "mvit", 2, 54.0, 69.0),
            _row("supervised", "resnet", 0, 45.0, 66.0),
            _row("supervised", "resnet", 1, 49.0, 68.0),
            _row("supervised", "resnet", 3, 10.0, 10.0),  # seed 3: unpaired, left out
            _row("kd", "resnet", 0, 47.0, 67.0),
            _device("mvit", 0.23, 1.5),
            _device("resnet", 0.50, 2.0),
        ],
    )
    return tmp_path


def test_differences_are_paired_over_the_shared_seeds(folder):
    c = compare(folder, "fewshot", "kd@mvit", "supervised@resnet")
    one, five = c.metrics
    assert one.seeds == [0, 1] and one.a == 51.0 and one.b == 47.0
    assert one.diff == pytest.approx(4.0)  # per seed: 5 and 3
    assert one.ci95 == pytest.approx(12.706 * 2**0.5 / 2**0.5)  # t(1) * sd 1.414 / sqrt 2
    assert five.diff == pytest.approx(3.5)
    assert c.costs["params_m"] == (0.23, 0.50)
    assert any(k.startswith("latency_p50_ms @") for k in c.costs)


def test_ambiguous_unknown_and_unpaired_rows_are_clear_errors(folder):
    with pytest.raises(ConfigError, match=r"several students .*kd@mvit"):
        compare(folder, "fewshot", "kd", "supervised")
    with pytest.raises(ConfigError, match=r"no fewshot records of 'dkd'.*kd@mvit"):
        compare(folder, "fewshot", "dkd", "supervised")
    with pytest.raises(ConfigError, match="no metric 'acc'"):
        compare(folder, "fewshot", "kd@mvit", "supervised", ["acc"])


def test_the_command_prints_the_table(folder):
    result = CliRunner().invoke(
        app, ["compare", "kd@mvit", "supervised@resnet", "-p", "fewshot", "--records", str(folder)]
    )
    assert result.exit_code == 0, result.output
    assert "acc_1shot" in result.output and "+4.00 ± 12.71" in result.output
    assert "params_m (device)" in result.output and "A/B = 0.46" in result.output
    bad = CliRunner().invoke(app, ["compare", "x", "y", "-p", "fewshot", "--records", str(folder)])
    assert bad.exit_code != 0 and "no fewshot records of 'x'" in bad.output


def _episodes(method, seed, correct, draws="same"):
    """A fewshot record that keeps its episodes: ``correct`` queries right of 10 each."""
    acc = 100.0 * sum(correct) / (10 * len(correct))
    record = _row(method, "mvit" if method == "kd" else "resnet", seed, acc, acc)
    record["statistics"] = {"correct_1shot": correct, "queries_per_episode": 10}
    record["draws"] = {"episodes_1shot": f"{draws}-{seed}"}
    return record


def test_the_bootstrap_pairs_episodes_when_both_rows_drew_the_same_ones(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for seed in range(3):
        base = rng.integers(3, 8, size=200)
        records.append(_episodes("kd", seed, [int(min(10, c + 1)) for c in base]))
        records.append(_episodes("supervised", seed, [int(c) for c in base]))
    _write(tmp_path, records)
    (one,) = compare(tmp_path, "fewshot", "kd@mvit", "supervised@resnet", ["acc_1shot"]).metrics
    assert one.level == "seeds and episodes"
    lower, upper = one.bootstrap
    assert lower <= one.diff <= upper and lower > 0  # +10 points on every episode, or near
    assert one.p_bootstrap == pytest.approx(1 / 2000) and one.p_t < 0.01
    # other episodes (another draws hash): only the seeds can be resampled
    for record in records[1::2]:
        record["draws"] = {"episodes_1shot": "other"}
    _write(tmp_path, records)
    (seeds_only,) = compare(tmp_path, "fewshot", "kd@mvit", "supervised@resnet").metrics[:1]
    assert seeds_only.level == "seeds"


def test_the_hierarchical_bootstrap_is_deterministic_and_covers_the_mean():
    from kdbench.metrics.stats import paired_bootstrap

    rng = np.random.default_rng(3)
    draws = {s: rng.normal(1.0, 4.0, size=300) for s in range(4)}
    first = paired_bootstrap(draws, resamples=400)
    assert first == paired_bootstrap(draws, resamples=400)
    mean, lower, upper, p = first
    assert mean == pytest.approx(np.mean([d.mean() for d in draws.values()]))
    assert lower < mean < upper and 0 < p <= 1
    # one value per seed: a plain bootstrap over the seeds
    _, lower, upper, p = paired_bootstrap({0: np.array([1.0]), 1: np.array([3.0])}, resamples=400)
    assert (lower, upper) == (1.0, 3.0) and p == pytest.approx(1 / 400)
    with pytest.raises(ValueError):
        paired_bootstrap({})

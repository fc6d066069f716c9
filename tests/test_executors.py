"""Executors: shards, plans, options, and the local executor (subprocesses on this machine).

The submitit executors (slurm, debug) are tested in test_executors_submitit.py."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from kdbench import plugins, runner
from kdbench.cli import app
from kdbench.errors import ConfigError
from kdbench.executors.batch import Batch
from kdbench.executors.driver import describe_plan, execute, executor_options
from kdbench.executors.local import LocalExecutor
from kdbench.executors.shards import parse_shard, shard
from kdbench.executors.units import unit_from_spec, unit_spec
from kdbench.record_files import load_record
from kdbench.results import Execution

REUSED = "student reused from the cache"


def smoke_units(protocols=("fewshot",), methods=("kd",), overrides=None, seeds=(0,)):
    registry = plugins.get_registry()
    units, _ = runner.plan(
        registry,
        protocols=list(protocols),
        methods=list(methods),
        smoke=True,
        overrides=overrides,
        seeds=seeds,
    )
    return registry, units


# -- shards and plans ---------------------------------------------------------------------


def test_shards_split_the_plan_into_disjoint_slices_that_cover_it():
    units = list(range(10))
    slices = [shard(units, i, 3) for i in range(3)]
    assert sorted(u for s in slices for u in s) == units
    assert slices[1] == [1, 4, 7]


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "0/0", "-1/2"])
def test_a_bad_shard_is_an_error_that_shows_the_form(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_a_unit_survives_the_trip_through_its_spec():
    registry, units = smoke_units(("fewshot", "segmentation"), ("kd", "supervised"))
    for unit in units:
        data = json.loads(json.dumps(unit_spec(unit)))
        again = unit_from_spec(data, registry)
        assert again.record_path(runner.DEFAULT_OUT) == unit.record_path(runner.DEFAULT_OUT)
        assert again.config == unit.config and again.label == unit.label


def test_plan_json_says_which_units_are_done_and_the_shard_that_runs_each(tmp_path):
    _, units = smoke_units(("fewshot",), ("kd", "supervised"))
    result = CliRunner().invoke(
        app, ["plan", "-p", "fewshot", "-m", "kd", "-m", "supervised", "--smoke", "--json",
              "--out", str(tmp_path)]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["units"]
    assert [r["label"] for r in rows] == [u.label for u in units]
    assert [r["status"] for r in rows] == ["missing", "missing"]
    assert [r["shard"] for r in rows] == ["0/2", "1/2"]
    # a finished record of the same unit makes it done; one of another config does not
    record = _fake_record(units[1])
    path = units[1].record_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(record.model_dump_json())
    assert [r["status"] for r in describe_plan(units, tmp_path)] == ["missing", "done"]
    sharded = CliRunner().invoke(
        app, ["plan", "-p", "fewshot", "-m", "kd", "-m", "supervised", "--smoke", "--json",
              "--out", str(tmp_path), "--shard", "1/2"]
    )  # fmt: skip
    assert [r["label"] for r in json.loads(sharded.output)["units"]] == [units[1].label]


def _fake_record(unit, status="ok", attempt=1):
    from kdbench.results import DatasetIdentity, ErrorInfo

    base = runner._base_record(unit, "cpu", time.perf_counter())
    base["execution"] = Execution(executor="local", attempt=attempt)
    if status == "ok":
        return runner.Record(**base, status="ok", dataset=DatasetIdentity(name="x", version="1"))
    return runner.Record(**base, status="failed", error=ErrorInfo(type="E", message="boom"))


def test_run_shard_runs_only_its_slice(tmp_path, monkeypatch):
    calls = []

    def fake_execute(units, **kwargs):
        calls.append([u.label for u in units])
        return runner.RunReport()

    monkeypatch.setattr("kdbench.executors.driver.execute", fake_execute)
    args = ["run", "-p", "fewshot", "-m", "kd", "-m", "supervised", "-m", "scratch", "--smoke"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    assert calls == [["fewshot/supervised/seed0"]]


# -- options ------------------------------------------------------------------------------


def test_cluster_defaults_come_from_the_environment_and_the_command_line_wins(monkeypatch):
    from kdbench.executors.slurm import SlurmExecutor

    monkeypatch.setenv("KDBENCH_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("KDBENCH_SLURM_TIMEOUT_MIN", "30")
    monkeypatch.setenv("KDBENCH_JOBS", "4")
    options = executor_options("slurm", SlurmExecutor, {"timeout_min": 90, "account": None})
    assert options == {"partition": "gpu", "timeout_min": 90, "jobs": 4}
    # a lab's slurm defaults do not stop a local run, but a slurm flag given to it does
    assert executor_options("local", LocalExecutor, {}) == {"jobs": 4}
    with pytest.raises(ConfigError, match="does not take --slurm-partition"):
        executor_options("local", LocalExecutor, {"partition": "gpu"})
    monkeypatch.setenv("KDBENCH_JOBS", "many")
    with pytest.raises(ConfigError, match="KDBENCH_JOBS"):
        executor_options("local", LocalExecutor, {})


def test_inline_refuses_options_it_cannot_honour(tmp_path):
    registry, units = smoke_units()
    with pytest.raises(ConfigError, match="--jobs 2"):
        execute(units, registry=registry, executor="inline", options={"jobs": 2}, out=tmp_path)
    with pytest.raises(ConfigError, match="--no-wait"):
        execute(units, registry=registry, executor="inline", out=tmp_path, wait=False)


def test_an_unknown_executor_names_the_registered_ones(tmp_path):
    registry, units = smoke_units()
    with pytest.raises(Exception, match="slurm"):
        execute(units, registry=registry, executor="slurn", out=tmp_path)


def test_device_units_are_refused_where_units_share_the_machine(tmp_path):
    registry, units = smoke_units(("device",), ("student",))
    with pytest.raises(ConfigError, match="--allow-shared-machine"):
        execute(units, registry=registry, executor="local", options={"jobs": 2}, out=tmp_path)
    assert not (tmp_path / ".jobs").exists()  # refused before any job started


def test_inline_records_say_how_they_ran(tmp_path, monkeypatch):
    """A unit run inline records the executor and host; inside a Slurm job (a hand-made
    array running --shard) the job and array index too."""
    from kdbench.provenance import execution

    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    ran = Execution(**execution())
    assert (ran.executor, ran.job_id, ran.array_index, ran.attempt) == ("inline", "4242_3", 3, 1)
    assert ran.host


# -- failed units and retries ---------------------------------------------------------------


def test_failed_units_are_retried_up_to_the_limit_with_their_attempt_counted(tmp_path):
    registry, units = smoke_units(("fewshot",), ("kd", "supervised"))
    for unit, attempt in zip(units, (1, 3)):
        path = unit.failed_path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fake_record(unit, "failed", attempt).model_dump_json())
    batch = Batch(units, registry, tmp_path, retries=2)
    triage = batch.triage()
    assert [(i, p.attempt) for i, p in triage.pending] == [(0, 2)]
    given_up = triage.settled[1]
    assert given_up.status == "failed" and "failed 3 time(s)" in given_up.message
    assert "boom" in given_up.message
    # a job that ended without writing any record counts as a try too
    units[0].failed_path(tmp_path).unlink()
    spec = batch.jobs([triage.pending[0][1]], "slurm")[0]
    spec.attempts = [3]
    batch.remember(spec, {"executor": "slurm", "job_id": "7"})
    triage = batch.triage(active=lambda job: False)
    assert not triage.pending
    assert "failed 3 time(s)" in triage.settled[0].message
    assert "wrote no record" in triage.settled[0].message


# -- the local executor -------------------------------------------------------------------


def _records(out):
    return sorted(p for p in out.rglob("*.json") if ".jobs" not in p.parts)


@pytest.mark.slow
def test_local_runs_units_side_by_side_and_a_rerun_submits_nothing(world_weights, tmp_path):
    """Two jobs at once, three smoke units: every record valid and written once, the base
    stage fewshot and segmentation share trained once (the other unit waits on its cache
    lock, then reuses it), and running again submits no job."""
    registry, units = smoke_units(("fewshot", "segmentation"), ("kd",))
    registry, more = smoke_units(("fewshot",), ("supervised",))
    units = [units[0], more[0], units[1]]
    out = tmp_path / "out"
    report = execute(units, registry=registry, executor="local", options={"jobs": 2}, out=out)
    assert [o.status for o in report.outcomes] == ["ok", "ok", "ok"], report.outcomes
    paths = _records(out)
    assert paths == sorted(u.record_path(out) for u in units)
    records = {p: load_record(p) for p in paths}
    assert {r.execution.executor for r in records.values()} == {"local"}
    kd = [records[u.record_path(out)] for u in units if u.method.name == "kd"]
    reused = [any(n.startswith(REUSED) for n in r.notes) for r in kd]
    assert sorted(reused) == [False, True]  # trained once, reused once
    assert not (out / ".work").exists() or not any((out / ".work").rglob("*.pt"))

    jobs = out / ".jobs" / "local"
    for f in jobs.iterdir():
        f.unlink()
    again = execute(units, registry=registry, executor="local", options={"jobs": 2}, out=out)
    assert [o.status for o in again.outcomes] == ["skipped"] * 3
    assert not any(jobs.iterdir())  # no job was started
    assert {p: load_record(p).run_id for p in paths} == {p: r.run_id for p, r in records.items()}


@pytest.mark.slow
def test_a_job_killed_mid_unit_resumes_from_its_checkpoint(world_weights, tmp_path, monkeypatch):
    """SIGKILL a job while its unit trains; the same command again resumes the unit from
    its last checkpoint and writes one record, the one an uninterrupted run writes."""
    monkeypatch.setenv("KDBENCH_CHECKPOINT_SECONDS", "0")  # a checkpoint every epoch
    overrides = {"fewshot.base.epochs": 4}
    registry, units = smoke_units(("fewshot",), ("kd",), overrides)
    unit = units[0]
    out = tmp_path / "out"
    batch = Batch(units, registry, out)
    spec = batch.jobs([p for _, p in batch.triage().pending], "local")[0]
    job_file = tmp_path / "job.json"
    job_file.write_text(spec.to_json())
    checkpoint = unit.work_dir(out) / "base-student.pt"
    job = subprocess.Popen(
        [sys.executable, "-m", "kdbench.executors.job", str(job_file), "local-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint.exists(), "the job never wrote a checkpoint"
        time.sleep(0.3)  # mid-unit: between checkpoints
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    assert not unit.record_path(out).exists()
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert step > 0

    report = execute(units, registry=registry, executor="local", options={"jobs": 1}, out=out)
    assert [o.status for o in report.outcomes] == ["ok"]
    assert _records(out) == [unit.record_path(out)]  # one record, no .failed.json
    assert not checkpoint.exists()  # the finished unit cleared its scratch space
    notes = load_record(unit.record_path(out)).notes
    assert (
        f"base student training was interrupted and resumed from its checkpoint at step {step}"
        in " ".join(notes)
    )
    # (that a resumed training equals the uninterrupted one is tests/test_train.py's)


@pytest.mark.slow
def test_ddp_under_the_local_executor_two_gloo_tasks_and_only_rank_0_writes(
    world_weights, tmp_path
):
    registry, units = smoke_units(("fewshot",), ("kd",))
    out = tmp_path / "out"
    executor = LocalExecutor(jobs=1, tasks_per_unit=2)
    report = executor.run(Batch(units, registry, out))
    log = (out / ".jobs" / "local" / "job-1.log").read_text()
    assert [o.status for o in report.outcomes] == ["ok"], log
    assert _records(out) == [units[0].record_path(out)]
    # both ranks ran the unit; only rank 0 logs and writes
    assert "rank 0 of 2" in log and "rank 1 of 2" in log
    assert log.count("finished: ok") == 1
    assert load_record(units[0].record_path(out)).execution.executor == "local"


def test_a_job_that_dies_without_a_record_is_reported_failed(tmp_path, monkeypatch):
    registry, units = smoke_units()
    monkeypatch.setattr(
        LocalExecutor,
        "_start",
        lambda self, batch, index, spec: _dead_job(batch, index, spec),
    )
    report = execute(units, registry=registry, executor="local", options={"jobs": 1}, out=tmp_path)
    assert report.outcomes[0].status == "failed"
    assert "without writing a record" in report.outcomes[0].message


def _dead_job(batch, index, spec):
    from kdbench.executors.local import _Running

    folder = batch.jobs_dir / "local"
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "dead.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", "import os; os._exit(9)"])
    return _Running(index, spec, [proc], log, folder / "dead.log", time.perf_counter())


def test_local_splits_the_cores_between_jobs(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    env = LocalExecutor(jobs=2, tasks_per_unit=2)._env(rank=1, port=1234)
    assert env["OMP_NUM_THREADS"] == "2"
    assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("1", "2", "1234")


def test_the_device_is_checked_here_only_where_units_run_here(monkeypatch):
    from kdbench.executors.driver import device_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    registry = plugins.get_registry()
    with pytest.raises(ConfigError, match="cuda"):
        device_for(registry, "local", "cuda")
    assert device_for(registry, "inline", "auto") == "cpu"
    assert device_for(registry, "slurm", "cuda") == "cuda"  # the nodes have GPUs, not this

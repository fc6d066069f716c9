"""The submitit executors, tested the way submitit tests itself: ``debug`` in process,
``slurm`` with ``sbatch``/``sacct``/``scancel`` mocked, and submitit's local executor for
time limits and requeues. Needs the ``kdbench[slurm]`` extra (CI installs it)."""

import json
import os
import sys
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")

from submitit.slurm.test_slurm import mocked_slurm  # noqa: E402

from kdbench import plugins, runner  # noqa: E402
from kdbench.errors import ConfigError  # noqa: E402
from kdbench.executors.batch import Batch  # noqa: E402
from kdbench.executors.driver import execute  # noqa: E402
from kdbench.executors.slurm import SlurmExecutor  # noqa: E402
from kdbench.record_files import load_record  # noqa: E402

EXPECTED_SBATCH = Path(__file__).parent / "data" / "cluster" / "sbatch-array.txt"


def smoke_units(protocols=("fewshot",), methods=("kd",), overrides=None):
    registry = plugins.get_registry()
    units, _ = runner.plan(
        registry, protocols=list(protocols), methods=list(methods), smoke=True,
        overrides=overrides,
    )  # fmt: skip
    return registry, units


def _comparable(record):
    """A record without what differs between two runs of one unit: ids, times, the
    process's provenance."""
    data = record.model_dump(mode="json")
    for key in ("run_id", "created_at", "cost", "execution", "environment"):
        data.pop(key)
    data["metrics"] = [m for m in data["metrics"] if m["unit"] != "s"]
    data["statistics"] = {k: v for k, v in data["statistics"].items() if "seconds" not in k}
    return data


@pytest.mark.slow
def test_debug_and_inline_write_the_same_records(world_weights, tmp_path, monkeypatch):
    records = {}
    for executor in ("inline", "debug"):
        monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / f"cache-{executor}"))
        plugins.reset()
        registry, units = smoke_units(("fewshot", "segmentation"), ("kd",))
        out = tmp_path / executor
        report = execute(units, registry=registry, executor=executor, out=out, progress=False)
        assert [o.status for o in report.outcomes] == ["ok", "ok"], report.outcomes
        records[executor] = [load_record(u.record_path(out)) for u in units]
    for inline, debug in zip(records["inline"], records["debug"]):
        assert _comparable(inline) == _comparable(debug)
        assert inline.execution.executor == "inline"
        assert debug.execution.executor == "debug" and debug.execution.job_id


def _normalised_script(text, folder):
    return text.replace(str(folder), "<FOLDER>").replace(sys.executable, "<PYTHON>")


def test_slurm_writes_the_expected_sbatch_array(tmp_path):
    """Partition, GPUs (one task each), time, array size and parallelism, as submitit
    writes them; compared with a stored file."""
    registry, units = smoke_units(("fewshot", "segmentation"), ("kd", "supervised", "scratch"))
    executor = SlurmExecutor(
        jobs=3, partition="gpu", gpus_per_node=2, timeout_min=90, array_parallelism=2
    )
    out = tmp_path / "out"
    with mocked_slurm() as mock:
        report = executor.run(Batch(units, registry, out, wait=False))
        job = mock.last_job
        script = (out / ".jobs" / "slurm" / job / f"{job}_submission.sh").read_text()
    assert [o.status for o in report.outcomes] == ["running"] * len(units)
    text = _normalised_script(script, out / ".jobs" / "slurm")
    if os.environ.get("KDBENCH_WRITE_EXPECTED"):
        EXPECTED_SBATCH.write_text(text)
    assert text == EXPECTED_SBATCH.read_text()


def test_no_wait_then_the_same_command_collects_and_resubmits_only_what_is_missing(tmp_path):
    registry, units = smoke_units(("fewshot",), ("kd", "supervised"))
    out = tmp_path / "out"
    executor = SlurmExecutor(partition="gpu")
    finished = _ok_record(units[0])
    with mocked_slurm() as mock:
        first = executor.run(Batch(units, registry, out, wait=False))
        assert [o.status for o in first.outcomes] == ["running", "running"]
        ledger = json.loads((out / ".jobs" / "ledger.json").read_text())
        assert sorted(j["job_id"] for j in ledger.values()) == ["12_0", "12_1"]

        # still queued: the collector reports it and submits nothing
        again = executor.run(Batch(units, registry, out, wait=False))
        assert [o.status for o in again.outcomes] == ["running", "running"]
        assert mock.job_count == 13  # one sbatch call so far

        # one finished with a record, the other ended without one: only it is resubmitted
        mock.set_job_state("12", "COMPLETED", array=2)
        path = units[0].record_path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(finished.model_dump_json())
        third = executor.run(Batch(units, registry, out, wait=False))
        assert [o.status for o in third.outcomes] == ["skipped", "running"]
        assert mock.job_count == 14
        script = (out / ".jobs" / "slurm" / "13" / "13_submission.sh").read_text()
        assert "--array" not in script and units[1].label in "".join(
            o.unit.label for o in third.outcomes if o.status == "running"
        )


def _ok_record(unit):
    import time

    from kdbench.results import DatasetIdentity

    base = runner._base_record(unit, "cpu", time.perf_counter())
    return runner.Record(**base, status="ok", dataset=DatasetIdentity(name="x", version="1"))


def test_device_units_get_an_exclusive_node(tmp_path):
    registry, units = smoke_units(("fewshot", "device"), ("student",))
    out = tmp_path / "out"
    with mocked_slurm():
        SlurmExecutor(partition="gpu").run(Batch(units, registry, out, wait=False))
    scripts = sorted((out / ".jobs" / "slurm").glob("*/*_submission.sh"))
    exclusive = ["#SBATCH --exclusive" in s.read_text() for s in scripts]
    assert exclusive == [False, True]


def test_a_missing_submitit_names_the_extra(tmp_path, monkeypatch):
    registry, units = smoke_units()
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ConfigError, match=r"kdbench\[slurm\]"):
        execute(units, registry=registry, executor="slurm", out=tmp_path)


@pytest.mark.slow
def test_a_job_past_its_time_limit_is_requeued_and_its_unit_finishes(
    world_weights, tmp_path, monkeypatch
):
    """submitit's local executor enforces the time limit like Slurm: USR2 before it, the
    job checkpoints and is requeued, and the requeued job resumes the unit from its last
    training checkpoint."""
    monkeypatch.setenv("KDBENCH_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("KDBENCH_SIGNAL_DELAY_S", "30")  # USR2 30 s in
    # long enough that the USR2 at 30 s always lands in training, on a fast machine too
    # (6 epochs took 5 s there, 100 took 27 s: both ended before any signal); each requeue
    # resumes and trains further, so a slow machine needs more of them
    registry, units = smoke_units(("fewshot",), ("kd",), {"fewshot.base.epochs": 300})
    out = tmp_path / "out"
    executor = SlurmExecutor(cluster="local", timeout_min=1.0, max_requeues=40)
    report = executor.run(Batch(units, registry, out))
    folder = out / ".jobs" / "submitit-local"
    logs = "".join(p.read_text() for p in sorted(folder.rglob("*_log.*")))
    assert [o.status for o in report.outcomes] == ["ok"], logs
    assert logs.count("fewshot/kd/seed0 started") >= 2  # it ran again after the requeue
    record = load_record(units[0].record_path(out))
    assert record.execution.executor == "submitit-local" and record.execution.attempt == 1
    # The last attempt either resumed the training itself, or found the student that an
    # earlier attempt finished (resumed, since 300 epochs outlast one attempt) in the cache:
    # that attempt's USR2 came after training, in evaluation. Without checkpoints every
    # attempt would restart and none would finish.
    assert any(
        "interrupted and resumed from its checkpoint" in n or "student reused from the cache" in n
        for n in record.notes
    ), record.notes

"""``slurm``: the units as a Slurm job array, submitted and watched by submitit.

kdbench writes no cluster code of its own: submitit writes the sbatch script, submits it,
asks ``sacct`` for states, and requeues a job that is preempted or reaches its time limit
(``--signal USR2``, then ``scontrol requeue``); the requeued job calls the same unit again,
which continues from its last training checkpoint. ``debug`` runs the same path in this
process (submitit's debug executor); ``cluster="local"`` runs it on this machine with
submitit's local executor, time limits and requeues included (the tests use it).

Units whose protocol needs a machine to itself (``device``) go in their own array with
``--exclusive``. Needs the ``kdbench[slurm]`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kdbench.errors import ConfigError
from kdbench.executors.batch import Batch
from kdbench.runner import RunReport

ACTIVE_STATES = frozenset(
    {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING"}
)
"""Slurm states of a job that may still write its records (not resubmitted meanwhile)."""

CLUSTERS = ("slurm", "debug", "local")


def require_submitit() -> Any:
    """The submitit module, or an error naming the extra that installs it."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "the slurm and debug executors need submitit: pip install 'kdbench[slurm]'"
        ) from None
    return submitit


class SlurmExecutor:
    """A submitit executor: ``slurm`` on a cluster, ``debug`` in this process."""

    cluster = "slurm"
    runs_here = False
    """Units run on the cluster's nodes: the device is resolved there, not here."""

    def __init__(
        self,
        jobs: int | None = None,
        partition: str | None = None,
        gpus_per_node: int | None = None,
        timeout_min: float | None = None,
        array_parallelism: int | None = None,
        account: str | None = None,
        cpus_per_task: int | None = None,
        folder: str | Path | None = None,
        max_requeues: int = 3,
        cluster: str | None = None,
    ) -> None:
        self.cluster = cluster or self.cluster
        if self.cluster not in CLUSTERS:
            raise ConfigError(f"submitit cluster must be one of {', '.join(CLUSTERS)}")
        self.jobs = jobs
        self.partition = partition
        self.gpus_per_node = gpus_per_node
        self.timeout_min = 240.0 if timeout_min is None else float(timeout_min)
        self.array_parallelism = array_parallelism
        self.account = account
        self.cpus_per_task = cpus_per_task
        self.folder = Path(folder) if folder else None
        self.max_requeues = max_requeues

    @property
    def name(self) -> str:
        """The executor as records name it: ``slurm``, ``debug`` or ``submitit-local``."""
        return "submitit-local" if self.cluster == "local" else self.cluster

    # -- submitit executors -------------------------------------------------------------
    def folder_for(self, batch: Batch) -> Path:
        """Where submitit keeps job scripts, pickles and logs (on the shared disk)."""
        return self.folder or batch.jobs_dir / self.name

    def make_executor(self, batch: Batch, count: int, exclusive: bool) -> Any:
        """A submitit executor for an array of ``count`` jobs."""
        submitit = require_submitit()
        folder = self.folder_for(batch) / "%j"
        gpus = self.gpus_per_node or 0
        tasks = max(1, gpus)  # one task per GPU: the unit trains with DDP across them
        if self.cluster == "debug":
            return submitit.DebugExecutor(folder=folder)
        if self.cluster == "local":
            executor = submitit.LocalExecutor(folder=folder, max_num_timeout=self.max_requeues)
            executor.update_parameters(
                timeout_min=self.timeout_min,
                gpus_per_node=gpus,
                tasks_per_node=tasks,
                signal_delay_s=int(os.environ.get("KDBENCH_SIGNAL_DELAY_S", "30")),
            )
            return executor
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.max_requeues)
        parameters: dict[str, Any] = {
            "job_name": "kdbench",
            "time": max(1, round(self.timeout_min)),
            "ntasks_per_node": tasks,
            "array_parallelism": self.array_parallelism or self.jobs or count,
        }
        optional = {
            "partition": self.partition,
            "gpus_per_node": self.gpus_per_node or None,
            "account": self.account,
            "cpus_per_task": self.cpus_per_task,
            "exclusive": True if exclusive else None,
        }
        parameters.update({k: v for k, v in optional.items() if v is not None})
        executor.update_parameters(**parameters)
        return executor

    # -- the executor contract -------------------------------------------------------------
    def run(self, batch: Batch) -> RunReport:
        require_submitit()
        if self.cluster == "debug" and not batch.wait:
            raise ConfigError("--no-wait needs a scheduler that outlives this command: slurm")
        triage = batch.triage(active=self._active)
        pending = [p for _, p in triage.pending]
        shared = [p for p in pending if not batch.exclusive(p.unit)]
        alone = [p for p in pending if batch.exclusive(p.unit)]
        if self.cluster == "local":  # every job at once, on this machine
            batch.refuse_shared_machine(self.name)
        submitted = []
        for group, exclusive in ((shared, False), (alone, True)):
            specs = batch.jobs(group, self.name, self.jobs)
            if not specs:
                continue
            executor = self.make_executor(batch, len(specs), exclusive)
            from kdbench.executors.submitit_job import UnitJob

            jobs = executor.map_array(UnitJob(), specs)
            for spec, job in zip(specs, jobs):
                where = str(self.folder_for(batch))
                entry = {"executor": self.name, "job_id": str(job.job_id), "folder": where}
                batch.remember(spec, entry)
                batch.log(f"submitted {len(spec.units)} unit(s) as job {job.job_id}")
            submitted.extend(jobs)
        if batch.wait:
            for job in submitted:
                try:
                    job.result()
                except Exception as error:  # its units have no record: collect says failed
                    batch.log(f"job {job.job_id} ended with an error: {error}")
        return batch.collect(triage, submitted=bool(submitted))

    def _active(self, job: dict[str, Any]) -> bool:
        """Whether a job from the ledger is still queued or running (asks ``sacct``)."""
        if job.get("executor") != "slurm" or self.cluster != "slurm":
            return False
        submitit = require_submitit()
        folder = Path(job.get("folder") or ".") / "%j"
        state = submitit.SlurmJob(folder=folder, job_id=job["job_id"]).state
        return state.split()[0].upper() in ACTIVE_STATES if state else False


class DebugExecutor(SlurmExecutor):
    """``debug``: the slurm path (job specs, pickling, submitit's job environment) run in
    this process, one job after another."""

    cluster = "debug"
    runs_here = True

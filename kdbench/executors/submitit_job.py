"""The callable submitit runs in a job: it runs the job's units, and when Slurm preempts
the job or its time is up, submitit calls :meth:`UnitJob.checkpoint` and requeues it; the
requeued call runs the same units, each continuing from its last training checkpoint
(units already finished are skipped)."""

from __future__ import annotations

from dataclasses import replace

import submitit

from kdbench.executors.batch import JobSpec
from kdbench.executors.job import run_job


class UnitJob(submitit.helpers.Checkpointable):
    """Run one :class:`JobSpec` inside a submitit job."""

    def __call__(self, spec: JobSpec) -> list[str]:
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # one task per GPU: the unit trains with DDP across them
            submitit.helpers.TorchDistributedEnvironment().export()
        task = env.array_task_id
        index = int(task) if task is not None and str(task).isdigit() else None
        return run_job(spec, job_id=str(env.job_id), array_index=index)

    def checkpoint(self, spec: JobSpec) -> submitit.helpers.DelayedSubmission:
        """Requeue the same units; ``--resume never`` applies to the first call only, so a
        requeued job keeps the checkpoints and records the first one made."""
        again = spec if spec.resume != "never" else replace(spec, resume="only-missing")
        return submitit.helpers.DelayedSubmission(UnitJob(), again)

"""Executors: how the units of a run are carried out.

``kdbench run`` plans its units (:func:`kdbench.planning.plan`), then hands them to an
executor, a registrable kind (``kdbench_register_executors``):

``inline`` (default)
    one unit after another in this process (:func:`kdbench.runner.run_units`);
``local``
    subprocesses on this machine, ``--jobs`` at once;
``slurm``
    a Slurm job array through submitit (the ``kdbench[slurm]`` extra), requeued on
    preemption and time limits;
``debug``
    the ``slurm`` path run in this process by submitit's debug executor.

Every executor that runs units out of process goes through :class:`~.batch.Batch`: units
already done are dropped first (the runner's own check), failed ones are retried up to a
limit, and what the jobs wrote is collected into the same report ``inline`` gives. See
``docs/cluster.md``.
"""

from kdbench.executors.batch import Batch, Executor, JobSpec

__all__ = ["Batch", "Executor", "JobSpec"]

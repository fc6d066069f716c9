"""``inline``: every unit in this process, one after another (the default)."""

from __future__ import annotations

from kdbench.errors import ConfigError
from kdbench.executors.batch import Batch
from kdbench.runner import RunReport, run_units


class InlineExecutor:
    """Runs the units in this process, with progress bars and Ctrl-C handling as
    ``kdbench run`` always had."""

    def __init__(self, jobs: int | None = None) -> None:
        if jobs not in (None, 1):
            raise ConfigError(
                f"--jobs {jobs} needs an executor that runs units side by side: "
                "--executor local (on this machine) or slurm"
            )

    def run(self, batch: Batch) -> RunReport:
        if not batch.wait:
            raise ConfigError("--no-wait needs a scheduler that outlives this command: slurm")
        return run_units(
            batch.units,
            registry=batch.registry,
            out=batch.out,
            resume=batch.resume,
            device=batch.device,
            progress=batch.progress,
            fail_fast=batch.fail_fast,
            log=batch.log,
        )

"""One job: run its units in this process and write their records.

The same function runs under every out-of-process executor: ``local`` starts
``python -m kdbench.executors.job JOBFILE``, ``slurm`` pickles a call to it through
submitit. Under several tasks (``torchrun``-style variables, or a Slurm job with a task per
GPU) it starts ``torch.distributed`` and the unit trains with DDP; only rank 0 writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kdbench.executors.batch import JobSpec
from kdbench.results import Execution


def run_job(
    spec: JobSpec, *, job_id: str | None = None, array_index: int | None = None
) -> list[str]:
    """Run ``spec``'s units, in order; the status of each (``ok``, ``failed``, ``skipped``:
    already done, e.g. by this job before it was requeued)."""
    from kdbench.executors.units import unit_from_spec
    from kdbench.plugins import get_registry
    from kdbench.provenance import execution
    from kdbench.runner import run_units
    from kdbench.train import init_distributed_from_env

    if init_distributed_from_env():
        from kdbench.train import distributed

        rank, world = distributed()
        print(f"kdbench job: rank {rank} of {world} (torch.distributed)", file=sys.stderr)
    registry = get_registry()
    statuses = []
    for data, attempt in zip(spec.units, spec.attempts):
        unit = unit_from_spec(data, registry)
        ran = Execution(
            **execution(spec.executor, job_id=job_id, array_index=array_index, attempt=attempt)
        )
        report = run_units(
            [unit],
            registry=registry,
            out=Path(spec.out),
            resume=spec.resume,  # type: ignore[arg-type]
            device=spec.device,
            progress=False,
            ran=ran,
        )
        statuses.append(report.outcomes[0].status)
    return statuses


def main(argv: list[str] | None = None) -> int:
    """``python -m kdbench.executors.job JOBFILE [JOB_ID]``: exit 0 when every unit has a
    finished record, 1 when one failed."""
    args = sys.argv[1:] if argv is None else argv
    spec = JobSpec.from_json(Path(args[0]).read_text(encoding="utf-8"))
    statuses = run_job(spec, job_id=args[1] if len(args) > 1 else None)
    return 1 if "failed" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())

"""``local``: the units as subprocesses on this machine, ``--jobs`` at once.

Each job is ``python -m kdbench.executors.job JOBFILE`` with its log in
``<out>/.jobs/local/``. The machine's cores are split between the jobs running at once
(``OMP_NUM_THREADS``, unless already set). With ``tasks_per_unit`` > 1 a unit runs as that
many processes under ``torch.distributed`` (gloo on CPU, NCCL on GPUs), as ``torchrun``
would start them; only rank 0 writes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kdbench.errors import ConfigError
from kdbench.executors.batch import Batch, JobSpec
from kdbench.runner import RunReport, check_output_folder
from kdbench.runtime import resolve_device


@dataclass
class _Running:
    index: int
    spec: JobSpec
    procs: list[subprocess.Popen[bytes]]
    log: IO[bytes]
    path: Path
    started: float

    def done(self) -> bool:
        return all(p.poll() is not None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        self.log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalExecutor:
    """Subprocesses on this machine: ``jobs`` units at once, each in ``tasks_per_unit``
    processes."""

    def __init__(self, jobs: int | None = None, tasks_per_unit: int = 1) -> None:
        self.jobs = 2 if jobs is None else int(jobs)
        self.tasks = int(tasks_per_unit)
        if self.jobs < 1 or self.tasks < 1:
            raise ConfigError("--jobs and the tasks per unit must be at least 1")

    def run(self, batch: Batch) -> RunReport:
        if not batch.wait:
            raise ConfigError(
                "--no-wait needs a scheduler that outlives this command: --executor slurm"
            )
        if self.jobs > 1:
            batch.refuse_shared_machine("local")
        resolve_device(batch.device)  # a device this machine lacks fails before any job
        check_output_folder(batch.out)
        triage = batch.triage()
        specs = batch.jobs([p for _, p in triage.pending], "local")
        self._pool(batch, specs)
        return batch.collect(triage, submitted=True)

    def _env(self, rank: int, port: int) -> dict[str, str]:
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[2])  # jobs run this kdbench, whatever
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        if "OMP_NUM_THREADS" not in env:
            cores = os.cpu_count() or 1
            env["OMP_NUM_THREADS"] = str(max(1, cores // (self.jobs * self.tasks)))
        if self.tasks > 1:
            env.update(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(self.tasks),
                LOCAL_WORLD_SIZE=str(self.tasks),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
        return env

    def _start(self, batch: Batch, index: int, spec: JobSpec) -> _Running:
        folder = batch.jobs_dir / "local"
        folder.mkdir(parents=True, exist_ok=True)
        job_file = folder / f"job-{index}.json"
        job_file.write_text(spec.to_json(), encoding="utf-8")
        log_path = folder / f"job-{index}.log"
        log = log_path.open("wb")
        port = _free_port() if self.tasks > 1 else 0
        command = [sys.executable, "-m", "kdbench.executors.job", str(job_file), f"local-{index}"]
        procs = [
            subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self._env(rank, port)
            )
            for rank in range(self.tasks)
        ]
        return _Running(index, spec, procs, log, log_path, time.perf_counter())

    def _pool(self, batch: Batch, specs: list[JobSpec]) -> None:
        queue = list(enumerate(specs, 1))
        running: list[_Running] = []
        total = len(specs)
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    index, spec = queue.pop(0)
                    job = self._start(batch, index, spec)
                    running.append(job)
                    batch.log(f"[{index}/{total}] {_labels(spec)} started (log {job.path})")
                for job in [j for j in running if j.done()]:
                    running.remove(job)
                    job.log.close()
                    codes = [p.returncode for p in job.procs]
                    status = "ok" if not any(codes) else f"failed (exit {max(codes)})"
                    seconds = time.perf_counter() - job.started
                    batch.log(
                        f"[{job.index}/{total}] {_labels(job.spec)} finished: {status} in "
                        f"{seconds:.1f} s"
                    )
                time.sleep(0.1)
        finally:  # Ctrl-C or an error here: no job outlives the command
            for job in running:
                job.stop()


def _labels(spec: JobSpec) -> str:
    return ", ".join(
        f"{u['protocol']}/{u['method']}"
        + (f"@{u['student']}" if u.get("student") else "")
        + (f"~{u['config']['precision']['name']}" if u["config"].get("precision") else "")
        + f"/seed{u['seed']}"
        for u in spec.units
    )

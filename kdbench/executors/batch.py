"""What every executor shares: the units to run, which of them still need running, the jobs
that carry them, and the report collected from the records the jobs wrote.

The driver (the ``kdbench run`` process) never writes a unit's record; each job does, with
the runner's atomic write. The driver only keeps a ledger of the jobs it submitted
(``<out>/.jobs/ledger.json``), so a later ``kdbench run`` with the same arguments knows which
units are still queued or running and resubmits only the missing and failed ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kdbench.atomic import atomic_write_text
from kdbench.errors import ConfigError, RecordError
from kdbench.planning import Unit
from kdbench.protocols.base import load_protocol
from kdbench.record_files import load_record
from kdbench.registry import Registry
from kdbench.runner import Outcome, ResumeMode, RunReport, finished_record
from kdbench.terminal import printable

DEFAULT_RETRIES = 2
"""A unit that failed this many more times than once is given up on (its error stays in its
``.failed.json``); ``--retries`` changes it."""


def _stderr(message: str) -> None:
    print(printable(message, newlines=True), file=sys.stderr)


@dataclass
class JobSpec:
    """One job: the units it runs one after another (as :func:`~.units.unit_spec` data),
    each with its attempt number, and where their records go."""

    units: list[dict[str, Any]]
    attempts: list[int]
    out: str
    device: str
    resume: str
    executor: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls(**json.loads(text))


@dataclass
class Pending:
    """A unit to submit, and which attempt this is (2 after one failure...)."""

    unit: Unit
    attempt: int = 1


@dataclass
class Triage:
    """The batch's units sorted by what is to be done with them."""

    settled: dict[int, Outcome] = field(default_factory=dict)
    """By position in the batch: done, given up on, or still queued or running."""
    pending: list[tuple[int, Pending]] = field(default_factory=list)


class Executor(Protocol):
    """What an executor is: a factory ``Executor(**options)`` whose ``run`` carries out a
    :class:`Batch` and reports every unit of it (``skipped`` when already done, ``running``
    when submitted and not waited for)."""

    def run(self, batch: Batch) -> RunReport: ...


@dataclass
class Batch:
    """The planned units of one ``kdbench run`` and how to run them."""

    units: Sequence[Unit]
    registry: Registry
    out: Path
    device: str = "auto"
    resume: ResumeMode = "only-missing"
    progress: bool | None = None
    fail_fast: bool = False
    wait: bool = True
    retries: int = DEFAULT_RETRIES
    allow_shared_machine: bool = False
    log: Callable[[str], None] = _stderr

    # -- planning ----------------------------------------------------------------------
    def exclusive(self, unit: Unit) -> bool:
        """Whether ``unit``'s figures need a machine to itself (the device protocol)."""
        return bool(getattr(load_protocol(unit.protocol), "exclusive_machine", False))

    def refuse_shared_machine(self, executor: str) -> None:
        """Stop before any work when units that need a machine to themselves would run
        beside others, unless ``--allow-shared-machine`` says the user knows."""
        if self.allow_shared_machine:
            return
        shared = sorted({u.protocol.name for u in self.units if self.exclusive(u)})
        if shared:
            raise ConfigError(
                f"--executor {executor} runs units side by side, and {', '.join(shared)} "
                "measures the machine (latency, energy): figures from a shared machine are "
                "not comparable. Run those units with --executor inline or slurm (an "
                "exclusive node), or pass --allow-shared-machine to run them anyway"
            )

    def triage(self, active: Callable[[dict[str, Any]], bool] | None = None) -> Triage:
        """Which units to submit: not those already done (the runner's check), nor those
        whose job in the ledger is still ``active``, nor those that failed more than
        :attr:`retries` times."""
        found = Triage()
        ledger = self.ledger()
        for i, unit in enumerate(self.units):
            path = unit.record_path(self.out)
            done = finished_record(unit, self.out, self.resume, self.log)
            if done is not None:
                found.settled[i] = Outcome(unit, "skipped", path, done, "already done")
                continue
            job = ledger.get(self._key(unit))
            if job is not None and active is not None and active(job):
                message = f"job {job['job_id']} is queued or running"
                found.settled[i] = Outcome(unit, "running", path, None, message)
                continue
            failed = self._failed(unit)
            tried = 0  # a failed record, or a job that ended without writing one, is a try
            if failed is not None:
                tried = failed.execution.attempt if failed.execution else 1
            if job is not None:
                tried = max(tried, int(job.get("attempt", 1)))
            if tried > self.retries:
                error = failed.error.message if failed and failed.error else None
                last = f"last error: {error}" if error else "its job wrote no record"
                message = f"failed {tried} time(s), not retried (--retries {self.retries}); {last}"
                where = unit.failed_path(self.out)
                found.settled[i] = Outcome(unit, "failed", where, failed, message)
                continue
            found.pending.append((i, Pending(unit, tried + 1)))
        return found

    def _failed(self, unit: Unit) -> Any:
        path = unit.failed_path(self.out)
        if not path.exists():
            return None
        try:
            return load_record(path)
        except RecordError:
            return None

    def jobs(
        self, pending: Sequence[Pending], executor: str, count: int | None = None
    ) -> list[JobSpec]:
        """The pending units in at most ``count`` jobs. Without a count, one job per unit in
        plan order (protocol by protocol, so the jobs running at once rarely wait on one
        cached stage). With one, units of a method, student and seed go in the same job
        where they can, since they share cached stages (the base student of ``fewshot``
        and ``segmentation``)."""
        if not pending:
            return []
        order = list(pending)
        if count:
            order.sort(key=lambda p: (p.unit.method.name, p.unit.student or "", p.unit.seed))
        count = len(order) if not count else max(1, min(count, len(order)))
        size, extra = divmod(len(order), count)
        groups, start = [], 0
        for j in range(count):
            end = start + size + (1 if j < extra else 0)
            groups.append(order[start:end])
            start = end
        from kdbench.executors.units import unit_spec

        return [
            JobSpec(
                units=[unit_spec(p.unit) for p in group],
                attempts=[p.attempt for p in group],
                out=str(self.out),
                device=self.device,
                resume=self.resume,
                executor=executor,
            )
            for group in groups
        ]

    # -- the ledger of submitted jobs ----------------------------------------------------
    @property
    def jobs_dir(self) -> Path:
        """Where job files and logs go: beside the records, on the same (shared) disk."""
        return self.out / ".jobs"

    def _key(self, unit: Unit) -> str:
        return unit.record_path(self.out).relative_to(self.out).as_posix()

    def ledger(self) -> dict[str, dict[str, Any]]:
        path = self.jobs_dir / "ledger.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def remember(self, spec: JobSpec, job: dict[str, Any]) -> None:
        """Note in the ledger that ``spec``'s units were submitted as ``job``."""
        from kdbench.executors.units import unit_from_spec

        ledger = self.ledger()
        for unit_data, attempt in zip(spec.units, spec.attempts):
            key = self._key(unit_from_spec(unit_data, self.registry))
            ledger[key] = {**job, "attempt": attempt}
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.jobs_dir / "ledger.json", json.dumps(ledger, indent=1))

    # -- collecting ------------------------------------------------------------------------
    def collect(self, triage: Triage, submitted: bool) -> RunReport:
        """The report of every unit: what the jobs wrote for those that were pending
        (``running`` if ``submitted`` and not waited for)."""
        report = RunReport()
        pending = dict(triage.pending)
        for i, unit in enumerate(self.units):
            if i in triage.settled:
                report.outcomes.append(triage.settled[i])
            elif submitted and not self.wait:
                path = unit.record_path(self.out)
                report.outcomes.append(Outcome(unit, "running", path, None, "submitted"))
            else:
                report.outcomes.append(self._written(pending[i].unit))
        return report

    def _written(self, unit: Unit) -> Outcome:
        path = unit.record_path(self.out)
        record = finished_record(unit, self.out, "only-missing", self.log)
        if record is not None:
            return Outcome(unit, "ok", path, record)
        failed = self._failed(unit)
        if failed is not None:
            message = failed.error.message if failed.error else "failed"
            return Outcome(unit, "failed", unit.failed_path(self.out), failed, message)
        return Outcome(
            unit,
            "failed",
            path,
            None,
            f"its job ended without writing a record; see the job logs in {self.jobs_dir}/",
        )

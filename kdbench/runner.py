"""Run protocol x method x seed units and write one record per unit.

Records go to ``<out>/<suite>/<protocol>/[<place>/]<method>-seed<seed>[.smoke].json``, where
the place names the unit's data, models and device when they are not the suite's defaults
(:mod:`kdbench.unit_place`); a failed
attempt goes beside it as ``...failed.json`` and never replaces a finished record. A unit's
scratch space (training checkpoints) to ``<out>/.work/...`` and is removed when the unit
finishes. Resume modes:

``never``
    run every unit from the start, overwriting records and discarding checkpoints;
``only-missing`` (default)
    skip units that already have an ``ok`` record for the same protocol version, config,
    method version and smoke flag; run the rest, continuing from their last checkpoint;
``always``
    skip every unit that has any ``ok`` record, even one from another config or version.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kdbench.cache import cache_dir
from kdbench.errors import CheckpointError, OutputError, RecordError
from kdbench.interrupts import RunInterrupted
from kdbench.models.weights_identity import with_weights
from kdbench.phases import PhaseClock, timing
from kdbench.planning import Unit, default_methods, plan
from kdbench.protocols.base import (
    ConfigError,
    Protocol,
    UnitContext,
    UnitResult,
    load_protocol,
)
from kdbench.provenance import environment, execution, kdbench_info
from kdbench.record_files import load_record, write_record
from kdbench.registry import Component, Registry
from kdbench.results import (
    ComponentRef,
    Cost,
    Environment,
    ErrorInfo,
    Execution,
    KdbenchInfo,
    MethodRef,
    ProtocolInfo,
    Record,
    config_hash,
    now_utc,
)
from kdbench.runtime import bars_shown, is_main_process, make_progress, resolve_device
from kdbench.seeding import seed_everything
from kdbench.terminal import printable, text_table
from kdbench.unit_place import place_units

ResumeMode = Literal["never", "only-missing", "always"]
RESUME_MODES: tuple[str, ...] = ("never", "only-missing", "always")
DEFAULT_OUT = Path("results")

#: ``plan``, ``Unit`` and ``default_methods`` live in :mod:`kdbench.planning` and are part of
#: this module's API too (plugins' tests plan units through ``runner.plan``).
__all__ = [
    "DEFAULT_OUT",
    "RESUME_MODES",
    "Outcome",
    "ResumeMode",
    "RunReport",
    "Unit",
    "build_record",
    "check_output_folder",
    "default_methods",
    "finished_record",
    "format_summary",
    "plan",
    "run_unit",
    "run_units",
    "summary_rows",
]


@dataclass
class Outcome:
    unit: Unit
    status: Literal["ok", "failed", "skipped", "running"]
    """``running``: submitted to a scheduler and not finished yet (``--no-wait``)."""
    path: Path
    record: Record | None = None
    message: str = ""


@dataclass
class RunReport:
    outcomes: list[Outcome] = field(default_factory=list)
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def _method_ref(method: Component) -> MethodRef:
    obj = method.load()
    return MethodRef(
        **method.ref(),
        description=method.description or None,
        url=method.url,
        reference=bool(getattr(obj, "reference", False)),
    )


def _base_record(
    unit: Unit, device: str, started: float, ran: Execution | None = None
) -> dict[str, Any]:
    proto: Protocol = load_protocol(unit.protocol)
    return {
        "execution": ran or Execution(**execution()),
        "run_id": uuid.uuid4().hex,
        "created_at": now_utc(),
        "smoke": unit.smoke,
        "suite": unit.suite,
        "kdbench": KdbenchInfo(**kdbench_info()),
        "protocol": ProtocolInfo(
            name=proto.name,
            version=proto.version,
            config=unit.config,
            config_hash=config_hash(unit.config),
        ),
        "method": _method_ref(unit.method),
        "seed": unit.seed,
        "environment": Environment(**environment()),
        "cost": Cost(total_seconds=time.perf_counter() - started, device=device),
    }


def build_record(
    unit: Unit,
    result: UnitResult,
    device: str,
    started: float,
    ran: Execution | None = None,
    clock: PhaseClock | None = None,
) -> Record:
    """The record of a finished unit: the protocol's result plus provenance; ``clock`` (if
    it timed the unit) splits its wall time into phases."""
    proto: Protocol = load_protocol(unit.protocol)
    unknown = [m.name for m in result.metrics if not proto.declares(m.name)]
    if unknown:
        raise ConfigError(f"protocol {proto.name!r} returned undeclared metrics {unknown}")
    base = _base_record(unit, device, started, ran)
    components = {"protocol": ComponentRef(**unit.protocol.ref()), **result.components}
    components = with_weights(components)  # the sha256 of every model's tensors
    total = time.perf_counter() - started
    phases = None
    if clock is not None:
        phases = clock.seconds()  # what ran before the clock started (setup) is "other"
        phases["other"] += max(0.0, total - sum(phases.values()))
        phases = {name: round(seconds, 3) for name, seconds in phases.items()}
    base["cost"] = Cost(
        train_seconds=result.train_seconds,
        eval_seconds=result.eval_seconds,
        total_seconds=total,
        device=device,
        phases=phases,
    )
    return Record(
        **base,
        status="ok",
        dataset=result.dataset,
        components=components,
        draws=result.draws,
        metrics=result.metrics,
        device_fingerprint=result.device_fingerprint,
        statistics=result.statistics,
        notes=result.notes,
    )


def _run_once(
    unit: Unit,
    work: Path,
    registry: Registry,
    device: str,
    progress: Callable[..., Any],
    log: Callable[[str], None],
    started: float,
    ran: Execution | None,
) -> Record:
    proto: Protocol = load_protocol(unit.protocol)
    work.mkdir(parents=True, exist_ok=True)
    seed_everything(unit.seed)
    context = UnitContext(
        protocol=proto,
        method=unit.method,
        seed=unit.seed,
        suite=unit.suite,
        smoke=unit.smoke,
        config=unit.config,
        registry=registry,
        device=device,
        cache_dir=cache_dir(),
        work_dir=work,
        progress=progress,
        log=log,
    )
    with timing(PhaseClock()) as clock:
        result = proto.run(context)
        return build_record(unit, result, device, started, ran, clock)


def run_unit(
    unit: Unit,
    *,
    out: Path,
    registry: Registry,
    device: str,
    progress: Callable[..., Any],
    log: Callable[[str], None],
    ran: Execution | None = None,
) -> Record:
    """Run one unit; returns its record (``status='failed'`` if the protocol raised).

    A training checkpoint in the unit's work folder that cannot be used (damaged, or from
    another config) is discarded with a warning and the unit starts over, once.
    """
    started = time.perf_counter()
    work = unit.work_dir(out)
    args = (unit, work, registry, device, progress, log, started, ran)
    try:
        try:
            record = _run_once(*args)
        except CheckpointError as error:
            log(f"warning: {unit.label}: {error}. It is discarded and the unit starts over.")
            shutil.rmtree(work, ignore_errors=True)
            record = _run_once(*args)
    except Exception as error:  # one broken unit must not sink the others
        return _failed_record(unit, device, started, error, log, ran)
    shutil.rmtree(work, ignore_errors=True)
    return record


def _failed_record(
    unit: Unit,
    device: str,
    started: float,
    error: Exception,
    log: Callable[[str], None],
    ran: Execution | None = None,
) -> Record:
    log(f"{unit.label} failed: {type(error).__name__}: {error}")
    if os.environ.get("KDBENCH_DEBUG"):
        traceback.print_exc()
    return Record(
        **_base_record(unit, device, started, ran),
        status="failed",
        error=ErrorInfo(type=type(error).__name__, message=str(error)),
    )


def _existing(path: Path, log: Callable[[str], None]) -> Record | None:
    if not path.exists():
        return None
    try:
        return load_record(path)
    except RecordError as error:
        log(f"{path} is not a valid record, it will be re-run ({error.problems[0].message})")
        return None


def finished_record(
    unit: Unit, out: Path, resume: ResumeMode, log: Callable[[str], None]
) -> Record | None:
    """The record that makes ``unit`` done under ``resume`` (so it is not run again), or
    ``None`` when it is to run. Every executor plans through this."""
    if resume == "never":
        return None
    previous = _existing(unit.record_path(out), log)
    done = previous is not None and previous.status == "ok"
    if done and (resume == "always" or unit.matches(previous)):
        return previous
    return None


def check_output_folder(out: Path) -> None:
    """Fail before any unit runs when records cannot be written under ``out``."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; choose a folder for the records")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".kdbench-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(
            f"cannot write records to --out {out} ({error.strerror or error}); choose a "
            "folder you can write to"
        ) from None


def _write(record: Record, path: Path, unit: Unit) -> None:
    try:
        write_record(record, path)
    except OSError as error:  # nothing half-written remains: writes are atomic
        raise OutputError(
            f"cannot write the record of {unit.label} to {path} ({error.strerror or error}); "
            "records written before it are kept: fix this and run the same command again"
        ) from None


@dataclass
class UnitLines:
    """One log line per unit started and finished, for runs without progress bars:
    ``[3/21] fewshot/kd/seed0 finished: ok in 42.1 s -> results/embedded/fewshot/...``."""

    total: int
    log: Callable[[str], None]

    def _prefix(self, index: int, unit: Unit) -> str:
        return f"[{index}/{self.total}] {unit.label}"

    def started(self, index: int, unit: Unit) -> None:
        self.log(f"{self._prefix(index, unit)} started")

    def finished(self, index: int, unit: Unit, status: str, seconds: float, path: Path) -> None:
        self.log(f"{self._prefix(index, unit)} finished: {status} in {seconds:.1f} s -> {path}")

    def skipped(self, index: int, unit: Unit, path: Path) -> None:
        self.log(f"{self._prefix(index, unit)} skipped: already done ({path})")


def run_units(
    units: Sequence[Unit],
    *,
    registry: Registry,
    out: Path = DEFAULT_OUT,
    resume: ResumeMode = "only-missing",
    device: str = "auto",
    progress: bool | None = None,
    fail_fast: bool = False,
    log: Callable[[str], None] | None = None,
    ran: Execution | None = None,
) -> RunReport:
    """Run ``units`` in order, writing each record as soon as it exists.

    Without progress bars (not a terminal, or ``progress=False``) each unit logs one line
    when it starts and one when it finishes, with its time, so a log file or a CI job is
    never silent. Ctrl-C raises :class:`RunInterrupted` (a ``KeyboardInterrupt``) naming the
    unit it stopped; records already written stay, and running the same units again resumes.
    ``ran`` is the provenance put in every record (default: ``inline`` on this host).
    """
    if resume not in RESUME_MODES:
        raise ConfigError(f"--resume must be one of {', '.join(RESUME_MODES)}, not {resume!r}")
    log = log or (lambda msg: print(printable(msg, newlines=True), file=sys.stderr))
    out = Path(out)
    if is_main_process():
        check_output_folder(out)
    cache_dir()  # a cache folder that cannot be used is an error before any work
    device = resolve_device(device)
    units = place_units(units, registry, device)  # every unit's data checked before the first
    bar_factory = make_progress(progress)
    lines = UnitLines(len(units), log) if is_main_process() and not bars_shown(progress) else None
    report = RunReport()
    current: Unit | None = None
    position = written = 0
    try:
        bar = bar_factory(units, desc="units", unit="unit", leave=True)
        for index, unit in enumerate(bar, 1):
            current, position = unit, index
            bar.set_postfix_str(unit.label)
            path = unit.record_path(out)
            previous = finished_record(unit, out, resume, log)
            if previous is not None:
                report.outcomes.append(Outcome(unit, "skipped", path, previous, "already done"))
                if lines:
                    lines.skipped(index, unit, path)
                continue
            if resume == "never":
                shutil.rmtree(unit.work_dir(out), ignore_errors=True)
            if lines:
                lines.started(index, unit)
            started = time.perf_counter()
            record = run_unit(
                unit,
                out=out,
                registry=registry,
                device=device,
                progress=bar_factory,
                log=log,
                ran=ran,
            )
            status = "ok" if record.status == "ok" else "failed"
            if status == "failed":
                path = unit.failed_path(out)
            if is_main_process():
                _write(record, path, unit)
                written += 1
                if status == "ok":
                    unit.failed_path(out).unlink(missing_ok=True)
            message = record.error.message if record.error else ""
            report.outcomes.append(Outcome(unit, status, path, record, message))
            if lines:
                lines.finished(index, unit, status, time.perf_counter() - started, path)
            if status == "failed" and fail_fast:
                break
    except KeyboardInterrupt as interrupt:
        label = current.label if current is not None else None
        again = "--resume only-missing" if resume == "never" else None
        raise RunInterrupted(label, position, len(units), written, out, again) from interrupt
    return report


def summary_rows(report: RunReport) -> list[dict[str, Any]]:
    """One row per protocol x method (with its student, if not the default) x headline
    metric, mean ± CI over the seeds run."""
    from kdbench.metrics.stats import mean_ci95

    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in report.outcomes:
        groups.setdefault((o.unit.protocol.name, o.unit.row), []).append(o)
    rows = []
    for (proto, method), outcomes in groups.items():
        records = [o.record for o in outcomes if o.record is not None and o.record.status == "ok"]
        failed = sum(1 for o in outcomes if o.status == "failed")
        heads = [m for m in records[0].metrics if m.headline] if records else []
        if not heads:
            rows.append(
                {
                    "protocol": proto,
                    "method": method,
                    "metric": "-",
                    "value": None,
                    "ci95": None,
                    "unit": None,
                    "seeds": len(records),
                    "failed": failed,
                }
            )
        for head in heads:
            values = [r.metric(head.name).value for r in records]
            values = [v for v in values if v is not None]
            if not values:
                mean, ci = None, None
            elif len(values) == 1:
                mean, ci = values[0], records[0].metric(head.name).ci95
            else:
                mean, ci = mean_ci95(values)
            rows.append(
                {
                    "protocol": proto,
                    "method": method,
                    "metric": head.name,
                    "value": mean,
                    "ci95": ci,
                    "unit": head.unit,
                    "seeds": len(values),
                    "failed": failed,
                }
            )
    return rows


def format_summary(report: RunReport, out: Path) -> str:
    """The table ``kdbench run`` prints at the end."""
    rows = summary_rows(report)
    header = ("protocol", "method", "metric", "mean ± 95% CI", "seeds", "failed")
    table = []
    for r in rows:
        if r["value"] is None:
            shown = "n/a"
        else:
            unit = f" {r['unit']}" if r["unit"] else ""
            ci = f" ± {r['ci95']:.2f}" if r["ci95"] is not None else ""
            shown = f"{r['value']:.2f}{ci}{unit}"
        cells = (r["protocol"], r["method"], r["metric"], shown, r["seeds"], r["failed"])
        table.append(tuple(printable(str(cell)) for cell in cells))
    lines = text_table(header, table)
    done = sum(o.status == "ok" for o in report.outcomes)
    skipped = sum(o.status == "skipped" for o in report.outcomes)
    lines.append("")
    running = sum(o.status == "running" for o in report.outcomes)
    queued = f", {running} queued or running" if running else ""
    lines.append(
        f"{done} unit(s) run, {skipped} already done, {len(report.failed)} failed{queued}; "
        f"records in {out}/"
    )
    for proto, method, reason in report.unsupported:
        lines.append(printable(f"not run: {proto}/{method}: {reason}"))
    for o in report.failed:
        lines.append(printable(f"FAILED {o.unit.label}: {o.message}"))
    return "\n".join(lines)

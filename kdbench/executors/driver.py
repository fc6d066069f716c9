"""The driver: build the named executor with its options and hand it the planned units.

Cluster defaults come from the environment, so a lab sets them once (in a module file or a
shell profile) instead of on every command line; an option given on the command line wins.
A default an executor does not take is ignored (``KDBENCH_SLURM_PARTITION`` set for the
lab's ``slurm`` runs does not stop a ``--executor local`` run), but an option given on the
command line that the executor does not take is an error.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kdbench.errors import ConfigError
from kdbench.executors.batch import DEFAULT_RETRIES, Batch
from kdbench.planning import Unit
from kdbench.registry import Registry
from kdbench.runner import ResumeMode, RunReport
from kdbench.unit_place import place_units

DEFAULT_EXECUTOR = "inline"

ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "jobs": ("KDBENCH_JOBS", int),
    "partition": ("KDBENCH_SLURM_PARTITION", str),
    "gpus_per_node": ("KDBENCH_SLURM_GPUS_PER_NODE", int),
    "timeout_min": ("KDBENCH_SLURM_TIMEOUT_MIN", float),
    "array_parallelism": ("KDBENCH_SLURM_ARRAY_PARALLELISM", int),
    "account": ("KDBENCH_SLURM_ACCOUNT", str),
    "cpus_per_task": ("KDBENCH_SLURM_CPUS_PER_TASK", int),
    "folder": ("KDBENCH_SLURM_FOLDER", str),
}
"""Executor option -> (environment variable holding its default, its type)."""

OPTION_FLAGS = {
    "jobs": "--jobs",
    "partition": "--slurm-partition",
    "gpus_per_node": "--slurm-gpus-per-node",
    "timeout_min": "--slurm-timeout-min",
    "array_parallelism": "--slurm-array-parallelism",
    "account": "--slurm-account",
}


def executor_options(
    name: str, factory: Callable[..., Any], given: dict[str, Any]
) -> dict[str, Any]:
    """The options ``factory`` is built with: ``given`` (``None`` values left out), then
    the environment's defaults for the options it takes."""
    given = {k: v for k, v in given.items() if v is not None}
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = set(parameters) if not takes_any else set(given) | set(ENVIRONMENT)
    unknown = sorted(set(given) - accepted)
    if unknown:
        flags = ", ".join(OPTION_FLAGS.get(k, k) for k in unknown)
        raise ConfigError(f"--executor {name} does not take {flags}")
    options = dict(given)
    for option, (variable, kind) in ENVIRONMENT.items():
        raw = os.environ.get(variable, "").strip()
        if option in options or option not in accepted or not raw:
            continue
        try:
            options[option] = kind(raw)
        except ValueError:
            raise ConfigError(f"{variable}={raw!r} is not a valid {kind.__name__}") from None
    return options


def device_for(registry: Registry, executor: str, device: str) -> str:
    """``device`` checked and resolved here when ``executor`` runs units on this machine
    (so a device it lacks fails before any work), else passed on as given: a GPU node's
    ``auto`` is not the login node's."""
    from kdbench.runtime import resolve_device

    factory = registry.get("executors", executor).load()
    return resolve_device(device) if getattr(factory, "runs_here", True) else device


def execute(
    units: Sequence[Unit],
    *,
    registry: Registry,
    executor: str = DEFAULT_EXECUTOR,
    options: dict[str, Any] | None = None,
    out: Path = Path("results"),
    resume: ResumeMode = "only-missing",
    device: str = "auto",
    progress: bool | None = None,
    fail_fast: bool = False,
    wait: bool = True,
    retries: int = DEFAULT_RETRIES,
    allow_shared_machine: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunReport:
    """Run ``units`` with the executor registered as ``executor``; the report of every
    unit (``running`` for those submitted and not waited for)."""
    if retries < 0:
        raise ConfigError("--retries must be 0 or more")
    factory = registry.get("executors", executor).load()
    instance = factory(**executor_options(executor, factory, options or {}))
    # Each unit's place (its data and models; the machine is added where the unit runs, by
    # run_units), so that finished units are found before anything is submitted and every
    # dataset and weights file is checked once, here.
    units = place_units(list(units), registry, None)
    batch = Batch(
        units=list(units),
        registry=registry,
        out=Path(out),
        device=device,
        resume=resume,
        progress=progress,
        fail_fast=fail_fast,
        wait=wait,
        retries=retries,
        allow_shared_machine=allow_shared_machine,
    )
    if log is not None:
        batch.log = log
    return instance.run(batch)


def describe_plan(
    units: Sequence[Unit], out: Path, resume: ResumeMode = "only-missing"
) -> list[dict[str, Any]]:
    """One JSON-able row per planned unit: what it is, where its record goes, whether it
    is ``done``, ``failed`` (a ``.failed.json`` and no finished record) or ``missing``,
    and the ``--shard`` that runs it alone."""
    from kdbench.executors.units import unit_spec
    from kdbench.results import config_hash
    from kdbench.runner import finished_record

    rows = []
    for index, unit in enumerate(units):
        if finished_record(unit, out, resume, lambda _: None) is not None:
            status = "done"
        elif unit.failed_path(out).exists():
            status = "failed"
        else:
            status = "missing"
        spec = unit_spec(unit)
        spec.pop("config")
        rows.append(
            {
                "index": index,
                "label": unit.label,
                **spec,
                "config_hash": config_hash(unit.config),
                "record": str(unit.record_path(out)),
                "status": status,
                "shard": f"{index}/{len(units)}",
            }
        )
    return rows

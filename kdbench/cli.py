"""The ``kdbench`` command line: a thin layer over the Python API.

Every command parses its options and calls a function that tests call directly; errors a
user can fix are printed as one ``error:`` line with exit code 2.
"""

from __future__ import annotations

from kdbench.interrupts import EXIT_INTERRUPTED, exit_now, quiet_uncaught_interrupts

quiet_uncaught_interrupts()  # Ctrl-C while the modules below load: one line, no traceback

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import typer  # noqa: E402

from kdbench import __version__  # noqa: E402
from kdbench.reporting import interrupt_reported, report_interrupt, user_errors  # noqa: E402

app = typer.Typer(
    name="kdbench",
    help="Benchmark knowledge distillation from vision foundation models.\n\n"
    "Example: kdbench run   (the embedded suite, every protocol, the built-in methods)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"kdbench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show third-party libraries' INFO logs (timm, open_clip)."
    ),
) -> None:
    """Benchmark knowledge distillation from vision foundation models."""
    from kdbench.runtime import set_verbose

    set_verbose(verbose)


def _echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    from kdbench.terminal import printable, text_table

    cells = [[printable(r[c]) if r.get(c) is not None else "" for c in columns] for r in rows]
    for line in text_table([c.upper() for c in columns], cells, rule=False):
        typer.echo(line)


@app.command("plugins")
@user_errors
def plugins_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List installed plugins, their versions and the hooks they implement.

    Example: kdbench plugins --json
    """
    from kdbench.plugins import get_host

    host = get_host()
    _ = host.registry  # building the registry reports plugins whose hooks raise
    infos = [i.as_dict() for i in host.infos()]
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    for info in infos:
        info["hooks"] = ", ".join(h.removeprefix("kdbench_register_") for h in info["hooks"])
        info["status"] = f"BROKEN: {info['error']}" if info["error"] else "ok"
    _echo_table(infos, ["name", "distribution", "version", "hooks", "status"])


@app.command("ls")
@user_errors
def ls_command(
    kind: str | None = typer.Argument(
        None,
        help="One kind: teachers, students, adapters, losses, methods, datasets, "
        "confusers, sensors, protocols, executors, transfer_sets.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List registered components with the distribution and version that provide them.

    Example: kdbench ls methods
    """
    from kdbench.plugins import get_registry

    registry = get_registry()
    rows = [c.describe() for c in registry.components(kind)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _echo_table(rows, ["kind", "name", "distribution", "version", "description"])


_PROTOCOL = typer.Option(
    None, "--protocol", "-p", help="Protocol to run (repeatable). Default: all."
)
_METHOD = typer.Option(
    None, "--method", "-m", help="Method to run (repeatable). Default: kdbench's built-ins."
)
_STUDENT = typer.Option(
    None,
    "--student",
    help="Student to train or measure, NAME[:key=value,...] (repeatable; `kdbench ls "
    "students`), e.g. timm:mobilevit_xs:weights=mvit.safetensors: the run becomes "
    "method x student x seed. Default: the student each method declares, else the "
    "protocol's.",
)
_TEACHER = typer.Option(
    None,
    "--teacher",
    help="Teacher of every protocol run, NAME[:key=value,...] (`kdbench ls teachers`), "
    "e.g. timm:vit_base_patch14_dinov2.lvd142m:weights=dinov2-b.safetensors,img_size=518. "
    "Default: each protocol's.",
)
_SEED = typer.Option(None, "--seed", "-s", help="Seed (repeatable). Default: 0.")
_SUITE = typer.Option("embedded", help="'embedded' (Shapes world, CPU) or 'standard'.")
_SMOKE = typer.Option(False, "--smoke", help="Tiny sizes for testing; never ranked.")
_RESUME = typer.Option(
    "only-missing",
    help="never: redo everything; only-missing: skip finished units, continue crashed "
    "ones; always: skip any unit with a finished record.",
)
_OUT = typer.Option(Path("results"), "--out", "-o", help="Folder for the records.")
_SET = typer.Option(None, "--set", help="Override a config value: PROTOCOL.KEY=VALUE (repeatable).")
_PRECISION = typer.Option(
    None,
    "--precision",
    help="Score the student at this precision too (repeatable; default fp32 alone): int8 or "
    "int8-tensor (static post-training quantisation, real int8 kernels), int<b>-sim "
    "(simulated, b from 2 to 16). Quantised units land in their own records.",
)
_SHARD = typer.Option(
    None,
    "--shard",
    help="Only shard INDEX/COUNT of the plan (INDEX from 0, e.g. $SLURM_ARRAY_TASK_ID/8): "
    "for a scheduler that starts kdbench itself.",
)


def _planned(
    protocol: list[str] | None,
    method: list[str] | None,
    student: list[str] | None,
    seed: list[int] | None,
    suite: str,
    smoke: bool,
    set_: list[str] | None,
    shard: str | None,
    teacher: str | None = None,
    precision: list[str] | None = None,
) -> tuple[Any, list[Any], list[tuple[str, str, str]]]:
    """The registry, the units (of ``shard`` only, if given) and the unsupported rows."""
    from kdbench.executors.shards import parse_shard
    from kdbench.executors.shards import shard as take_shard
    from kdbench.planning import plan
    from kdbench.plugins import get_registry
    from kdbench.protocols.base import parse_overrides

    part = parse_shard(shard) if shard is not None else None
    registry = get_registry()
    units, unsupported = plan(
        registry,
        protocols=protocol or None,
        methods=method or None,
        seeds=seed or [0],
        suite=suite,
        smoke=smoke,
        overrides=parse_overrides(set_ or []),
        students=student or None,
        teacher=teacher,
        precisions=precision or None,
    )
    if part is not None:
        units = take_shard(units, *part)
    return registry, units, unsupported


@app.command("run")
@user_errors
def run_command(
    protocol: list[str] = _PROTOCOL,
    method: list[str] = _METHOD,
    student: list[str] = _STUDENT,
    teacher: str | None = _TEACHER,
    precision: list[str] = _PRECISION,
    seed: list[int] = _SEED,
    suite: str = _SUITE,
    smoke: bool = _SMOKE,
    resume: str = _RESUME,
    out: Path = _OUT,
    device: str = typer.Option(
        "auto", help="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; only devices this machine has."
    ),
    set_: list[str] = _SET,
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed unit."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bars (default: on a terminal)."
    ),
    shard: str | None = _SHARD,
    executor: str = typer.Option(
        "inline",
        "--executor",
        envvar="KDBENCH_EXECUTOR",
        help="How units run (`kdbench ls executors`): inline (this process), local "
        "(subprocesses, --jobs at once), slurm (a job array, kdbench[slurm]), debug.",
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", help="local: units at once; slurm: jobs to split the units into."
    ),
    slurm_partition: str | None = typer.Option(None, help="slurm: the partition."),
    slurm_gpus_per_node: int | None = typer.Option(
        None, help="slurm: GPUs per job (a unit trains with DDP across them)."
    ),
    slurm_timeout_min: float | None = typer.Option(
        None, help="slurm: time limit per job, minutes (then requeued). Default 240."
    ),
    slurm_array_parallelism: int | None = typer.Option(
        None, help="slurm: jobs of the array running at once. Default: --jobs."
    ),
    slurm_account: str | None = typer.Option(None, help="slurm: the account to charge."),
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="--no-wait: exit once submitted; the same command again collects, reports "
        "and resubmits what is missing or failed.",
    ),
    retries: int = typer.Option(
        2, help="Out-of-process executors: times a failed unit is resubmitted, at most."
    ),
    allow_shared_machine: bool = typer.Option(
        False,
        "--allow-shared-machine",
        help="Run device units beside others (--executor local --jobs >1): their "
        "latencies are then not comparable.",
    ),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="At the end, print where each unit's time went: data, teacher, student, "
        "evaluation, writing, other (every record keeps the split in cost.phases).",
    ),
) -> None:
    """Run protocol x method x seed units and write one record per unit.

    Example: kdbench run --protocol distill --method kd --seed 0 --seed 1
    Example: kdbench run -p fewshot -m kd --student shapes-resnet12 --student shapes-vit-xs
    Example: kdbench run -p fewshot -p device -m kd -m student --precision int8
    Example: kdbench run --suite standard --executor slurm --jobs 20 --slurm-partition gpu
    Example: kdbench run --suite standard -p distill --teacher
    timm:vit_base_patch14_dinov2.lvd142m:weights=dinov2-b.safetensors
    """
    from kdbench.executors.driver import device_for, execute
    from kdbench.plugins import get_registry
    from kdbench.runner import format_summary

    device = device_for(get_registry(), executor, device)  # before any work
    registry, units, unsupported = _planned(
        protocol, method, student, seed, suite, smoke, set_, shard, teacher, precision
    )
    typer.echo(f"kdbench {__version__}: {len(units)} unit(s) -> {out}/", err=True)
    report = execute(
        units,
        registry=registry,
        executor=executor,
        options={
            "jobs": jobs,
            "partition": slurm_partition,
            "gpus_per_node": slurm_gpus_per_node,
            "timeout_min": slurm_timeout_min,
            "array_parallelism": slurm_array_parallelism,
            "account": slurm_account,
        },
        out=out,
        resume=resume,  # type: ignore[arg-type]
        device=device,
        progress=progress,
        fail_fast=fail_fast,
        wait=wait,
        retries=retries,
        allow_shared_machine=allow_shared_machine,
    )
    report.unsupported = unsupported
    typer.echo(format_summary(report, out))
    if profile:
        from kdbench.phases import format_profile
        from kdbench.terminal import printable

        rows = [
            (o.unit.label, o.record.cost.total_seconds, o.record.cost.phases)
            for o in report.outcomes
            if o.record is not None
        ]
        typer.echo("\n" + printable(format_profile(rows), newlines=True))
    if report.failed:
        raise typer.Exit(1)


@app.command("plan")
@user_errors
def plan_command(
    protocol: list[str] = _PROTOCOL,
    method: list[str] = _METHOD,
    student: list[str] = _STUDENT,
    teacher: str | None = _TEACHER,
    precision: list[str] = _PRECISION,
    seed: list[int] = _SEED,
    suite: str = _SUITE,
    smoke: bool = _SMOKE,
    resume: str = _RESUME,
    out: Path = _OUT,
    set_: list[str] = _SET,
    shard: str | None = _SHARD,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the units `kdbench run` with the same options would run, and which are done.

    Each unit's `shard` (INDEX/COUNT) runs it alone: `kdbench run <same options> --shard
    INDEX/COUNT`, so any scheduler can drive kdbench one unit per task.

    Example: kdbench plan --suite standard --seed 0 --seed 1 --seed 2 --json
    """
    from kdbench.executors.driver import describe_plan
    from kdbench.runner import RESUME_MODES

    if resume not in RESUME_MODES:
        from kdbench.errors import ConfigError

        raise ConfigError(f"--resume must be one of {', '.join(RESUME_MODES)}, not {resume!r}")
    _, units, unsupported = _planned(
        protocol, method, student, seed, suite, smoke, set_, None, teacher, precision
    )
    rows = describe_plan(units, out, resume)  # type: ignore[arg-type]
    if shard is not None:  # the rows keep their index and shard in the whole plan
        from kdbench.executors.shards import parse_shard

        index, count = parse_shard(shard)
        rows = [row for row in rows if row["index"] % count == index]
    if as_json:
        skipped = [{"protocol": p, "row": r, "reason": why} for p, r, why in unsupported]
        typer.echo(json.dumps({"units": rows, "not_run": skipped}, indent=2))
        return
    _echo_table(rows, ["shard", "label", "status", "record"])


@app.command("compare")
@user_errors
def compare_command(
    a: str = typer.Argument(
        ...,
        help="Row A: METHOD[@STUDENT][+TRANSFER], e.g. kd@shapes-mobilevit or kd+retrieved "
        "(a transfer set the run chose with --set distill.transfer).",
    ),
    b: str = typer.Argument(..., help="Row B, e.g. supervised@shapes-resnet12."),
    protocol: str = typer.Option(..., "--protocol", "-p", help="The protocol both rows ran."),
    records: Path = typer.Option(Path("results"), "--records", help="Folder of records."),
    metric: list[str] = typer.Option(
        None, "--metric", help="Metric to compare (repeatable). Default: the headline ones."
    ),
) -> None:
    """Compare two rows seed by seed: A - B with a 95% CI over the seeds both ran, and
    their students' device costs.

    Example: kdbench compare kd@shapes-mobilevit supervised@shapes-resnet12 -p fewshot
    --records leaderboards/
    """
    from kdbench.compare import compare, format_comparison
    from kdbench.terminal import printable

    table = format_comparison(compare(records, protocol, a, b, metric or None))
    typer.echo("\n".join(printable(line) for line in table.splitlines()))


@app.command("export")
@user_errors
def export_command(
    fmt: str = typer.Option(
        ..., "--format", "-f", help="'every-eval-ever' or 'lm-eval' (see docs/results.md)."
    ),
    records: Path = typer.Option(
        Path("leaderboards"), "--records", "-r", help="Folder of records."
    ),
    out: Path = typer.Option(Path("export"), "--out", "-o", help="Folder the files go to."),
) -> None:
    """Write the ranked records in another evaluation framework's format.

    Example: kdbench export --format every-eval-ever --records leaderboards/ --out eee/
    """
    from kdbench.export import export_records, format_report
    from kdbench.terminal import printable

    report = export_records(records, out, fmt)
    typer.echo(printable(format_report(report, out)))


@app.command("rerun")
@user_errors
def rerun_command(
    record: Path = typer.Argument(..., help="A record file to re-run."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Keep the new record under this folder (default: discarded)."
    ),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."),
    fresh_cache: bool = typer.Option(
        True,
        "--fresh-cache/--shared-cache",
        help="Recompute every stage in an empty cache (default), or reuse the shared cache.",
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bars (default: on a terminal)."
    ),
) -> None:
    """Run a record's unit again from its stored config, components and seed, and print how
    each metric moved.

    Example: kdbench rerun leaderboards/embedded/oneclass/kd-seed0.json
    """
    from kdbench.rerun import format_rerun, rerun
    from kdbench.terminal import printable

    result = rerun(
        record,
        out=out,
        device=device,
        fresh_cache=fresh_cache,
        progress=progress,
        log=lambda m: typer.echo(printable(m), err=True),
    )
    typer.echo(printable(format_rerun(result), newlines=True))


@app.command("summarize")
@user_errors
def summarize_command(
    records: Path = typer.Argument(Path("leaderboards"), help="Folder of records."),
    fmt: str = typer.Option("markdown", "--format", "-f", help="'markdown', 'csv' or 'json'."),
    min_seeds: int | None = typer.Option(
        None,
        "--min-seeds",
        min=1,
        help="Rows with fewer seeds are preliminary, not ranked. Default: the leaderboard's (3).",
    ),
) -> None:
    """Print the leaderboard's tables (ranked as the site ranks them) without building it.

    Example: kdbench summarize leaderboards/ --format markdown
    """
    from kdbench.summarize import summarize

    typer.echo(summarize(records, fmt, min_seeds), nl=False)  # None: the leaderboard's


@app.command("validate")
def validate_command(
    paths: list[Path] = typer.Argument(..., help="Record files or folders (searched for *.json)."),
) -> None:
    """Check result records against the schema; exit 1 listing every problem.

    Example: kdbench validate leaderboards/
    """
    from kdbench.record_files import validate_paths
    from kdbench.terminal import printable

    checked, problems = validate_paths(paths)
    for problem in problems:
        typer.echo(printable(str(problem)), err=True)
    bad = len({p.path for p in problems})
    typer.echo(f"{checked} file(s) checked, {bad} invalid")
    if problems or checked == 0:
        if checked == 0:
            typer.echo("error: no record files found", err=True)
        raise typer.Exit(1)


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of a result record.

    Example: kdbench schema > record.schema.json
    """
    from kdbench.results import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command("config")
@user_errors
def config_command(
    protocol: str = typer.Argument(..., help="A protocol (kdbench ls protocols)."),
    suite: str = typer.Option("embedded", help="'embedded' or 'standard'."),
    smoke: bool = typer.Option(False, "--smoke", help="The smoke sizes."),
    as_json: bool = typer.Option(False, "--json", help="Print the config as a run records it."),
) -> None:
    """Print a protocol's default config, with what each value means.

    Example: kdbench config fewshot --suite standard
    """
    from kdbench.plugins import get_registry
    from kdbench.protocols.configs.listing import config_text

    typer.echo(config_text(get_registry(), protocol, suite=suite, smoke=smoke, as_json=as_json))


def _add_subcommands() -> None:
    """Command groups that live beside the code they drive."""
    from kdbench.device import cli as device_cli
    from kdbench.leaderboard import cli as leaderboard_cli
    from kdbench.transfer import cli as transfer_cli
    from kdbench.world import cli as world_cli

    world_cli.register(app, "world")
    device_cli.register(app, "device")
    leaderboard_cli.register(app, "leaderboard")
    transfer_cli.register(app, "transfer")


_add_subcommands()


def main() -> None:
    try:
        app(prog_name="kdbench")
    except SystemExit as done:
        if done.code == EXIT_INTERRUPTED:  # Ctrl-C: skip the seconds of interpreter teardown
            if not interrupt_reported():  # stopped outside a command body (parsing options)
                report_interrupt()
            exit_now(EXIT_INTERRUPTED)
        raise


if __name__ == "__main__":
    sys.exit(main())

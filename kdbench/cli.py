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
    from kdbench.terminal import printable

    cells = [[printable(r[c]) if r.get(c) is not None else "" for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


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
        "confusers, sensors, protocols.",
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


@app.command("run")
@user_errors
def run_command(
    protocol: list[str] = typer.Option(
        None, "--protocol", "-p", help="Protocol to run (repeatable). Default: all."
    ),
    method: list[str] = typer.Option(
        None, "--method", "-m", help="Method to run (repeatable). Default: kdbench's built-ins."
    ),
    student: list[str] = typer.Option(
        None,
        "--student",
        help="Student to train or measure, NAME[:key=value,...] (repeatable; `kdbench ls "
        "students`), e.g. timm:mobilevit_xs:weights=mvit.safetensors: the run becomes "
        "method x student x seed. Default: the student each method declares, else the "
        "protocol's.",
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        help="Teacher of every protocol run, NAME[:key=value,...] (`kdbench ls teachers`), "
        "e.g. timm:vit_base_patch14_dinov2.lvd142m:weights=dinov2-b.safetensors,img_size=518. "
        "Default: each protocol's.",
    ),
    seed: list[int] = typer.Option(None, "--seed", "-s", help="Seed (repeatable). Default: 0."),
    suite: str = typer.Option("embedded", help="'embedded' (Shapes world, CPU) or 'standard'."),
    smoke: bool = typer.Option(False, "--smoke", help="Tiny sizes for testing; never ranked."),
    resume: str = typer.Option(
        "only-missing",
        help="never: redo everything; only-missing: skip finished units, continue crashed "
        "ones; always: skip any unit with a finished record.",
    ),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Folder for the records."),
    device: str = typer.Option(
        "auto", help="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; only devices this machine has."
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a config value: PROTOCOL.KEY=VALUE (repeatable)."
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed unit."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bars (default: on a terminal)."
    ),
) -> None:
    """Run protocol x method x seed units and write one record per unit.

    Example: kdbench run --protocol distill --method kd --seed 0 --seed 1
    Example: kdbench run -p fewshot -m kd --student shapes-resnet12 --student shapes-vit-xs
    Example: kdbench run --suite standard -p distill --teacher
    timm:vit_base_patch14_dinov2.lvd142m:weights=dinov2-b.safetensors
    """
    from kdbench.plugins import get_registry
    from kdbench.protocols.base import parse_overrides
    from kdbench.runner import format_summary, plan, run_units
    from kdbench.runtime import resolve_device

    device = resolve_device(device)  # a device this machine lacks fails before any work
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
    )
    typer.echo(f"kdbench {__version__}: {len(units)} unit(s) -> {out}/", err=True)
    report = run_units(
        units,
        registry=registry,
        out=out,
        resume=resume,  # type: ignore[arg-type]
        device=device,
        progress=progress,
        fail_fast=fail_fast,
    )
    report.unsupported = unsupported
    typer.echo(format_summary(report, out))
    if report.failed:
        raise typer.Exit(1)


@app.command("compare")
@user_errors
def compare_command(
    a: str = typer.Argument(..., help="Row A: METHOD or METHOD@STUDENT, e.g. kd@shapes-mobilevit."),
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
    from kdbench.world import cli as world_cli

    world_cli.register(app, "world")
    device_cli.register(app, "device")
    leaderboard_cli.register(app, "leaderboard")


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

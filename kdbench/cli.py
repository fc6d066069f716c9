"""The ``kdbench`` command line: a thin layer over the Python API.

Every command parses its options and calls a function that tests call directly; errors a
user can fix are printed as one ``error:`` line with exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from kdbench import __version__

app = typer.Typer(
    name="kdbench",
    help="Benchmark knowledge distillation from vision foundation models.\n\n"
    "Example: kdbench run   (the embedded suite, every protocol, the built-in methods)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 2) -> None:
    from kdbench.terminal import printable

    typer.echo(f"error: {printable(message, newlines=True)}", err=True)
    raise typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn the errors a user can fix into one ``error:`` line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kdbench.errors import UserError

        try:
            return func(*args, **kwargs)
        except (UserError, ValueError, FileNotFoundError) as error:
            _fail(str(error))

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"kdbench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Benchmark knowledge distillation from vision foundation models."""


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
    seed: list[int] = typer.Option(None, "--seed", "-s", help="Seed (repeatable). Default: 0."),
    suite: str = typer.Option("embedded", help="'embedded' (Shapes world, CPU) or 'standard'."),
    smoke: bool = typer.Option(False, "--smoke", help="Tiny sizes for testing; never ranked."),
    resume: str = typer.Option(
        "only-missing",
        help="never: redo everything; only-missing: skip finished units, continue crashed "
        "ones; always: skip any unit with a finished record.",
    ),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Folder for the records."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda', 'cuda:1'..."),
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
    """
    from kdbench.plugins import get_registry
    from kdbench.protocols.base import parse_overrides
    from kdbench.runner import format_summary, plan, run_units

    registry = get_registry()
    units, unsupported = plan(
        registry,
        protocols=protocol or None,
        methods=method or None,
        seeds=seed or [0],
        suite=suite,
        smoke=smoke,
        overrides=parse_overrides(set_ or []),
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


@app.command("validate")
def validate_command(
    paths: list[Path] = typer.Argument(..., help="Record files or folders (searched for *.json)."),
) -> None:
    """Check result records against the schema; exit 1 listing every problem.

    Example: kdbench validate leaderboards/
    """
    from kdbench.results import validate_paths
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
    app(prog_name="kdbench")


if __name__ == "__main__":
    sys.exit(main())

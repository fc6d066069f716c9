"""``kdbench transfer``: look at the transfer sets the ``distill`` protocol builds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from kdbench.reporting import user_errors

transfer_app = typer.Typer(
    help="Transfer sets (kdbench ls transfer_sets): what retrieval picks from the pool.",
    no_args_is_help=True,
)


@transfer_app.command("contact-sheet")
@user_errors
def contact_sheet_command(
    out: Path = typer.Option(Path("transfer-sheet.png"), "--out", "-o", help="PNG to write."),
    seed: int = typer.Option(0, help="Which seed's labelled images are the queries."),
    suite: str = typer.Option("embedded", help="'embedded' or 'standard'."),
    smoke: bool = typer.Option(False, "--smoke", help="The smoke sizes (a tiny pool)."),
    rows: int = typer.Option(12, min=1, help="Query rows (one per class, first classes)."),
    neighbours: int = typer.Option(10, min=1, help="Retrieved images shown per query."),
    overrides: list[str] = typer.Option(
        None,
        "--set",
        help="distill.KEY=VALUE, e.g. distill.transfer=retrieved:by=student (repeatable).",
    ),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda'..."),
) -> None:
    """Write a contact sheet of query images and the images retrieved for them, and print
    the retrieved set's composition (fraction of the task's classes and domain).

    Example: kdbench transfer contact-sheet --out sheet.png
    """
    from kdbench.protocols.base import parse_overrides
    from kdbench.runtime import resolve_device
    from kdbench.transfer.contact_sheet import write_contact_sheet

    sheet = write_contact_sheet(
        out,
        seed=seed,
        suite=suite,
        smoke=smoke,
        overrides=parse_overrides(overrides or []),
        rows=rows,
        neighbours=neighbours,
        device=resolve_device(device),
    )
    typer.echo(json.dumps(sheet.statistics, indent=2, sort_keys=True))
    typer.echo(f"wrote {sheet.path} ({sheet.queries} queries)")


def register(app: typer.Typer, name: str) -> None:
    app.add_typer(transfer_app, name=name)

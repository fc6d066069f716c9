"""``kdbench leaderboard build`` and ``kdbench leaderboard serve``: parse, then call the API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from kdbench.leaderboard.acceptance import MIN_SEEDS
from kdbench.reporting import fail
from kdbench.terminal import printable

if TYPE_CHECKING:
    from kdbench.leaderboard.build import BuildReport

#: Per reason, how many unranked files the build lists before it only counts them.
LISTED_PER_REASON = 20


def _report_unranked(report: BuildReport) -> None:
    intake = report.intake
    shown: dict[str, int] = {}
    for item in intake.unranked:
        shown[item.reason] = shown.get(item.reason, 0) + 1
        if shown[item.reason] <= LISTED_PER_REASON:
            line = f"not ranked ({item.reason}): {item.file.path}: {item.detail}"
            typer.echo(printable(line), err=True)
    for reason, count in intake.reason_counts().items():
        if count > LISTED_PER_REASON:
            typer.echo(
                f"not ranked ({reason}): ... and {count - LISTED_PER_REASON} more "
                f"(all are listed on unranked.html)",
                err=True,
            )


def _summary(report: BuildReport) -> str:
    intake = report.intake
    counts = intake.reason_counts()
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts.items())
    total = len(intake.ranked) + len(intake.unranked)
    unranked = f", {len(intake.unranked)} not ranked ({reasons})" if counts else ""
    tables = len(report.tables)
    return f"{total} record file(s): {len(intake.ranked)} ranked{unranked}; {tables} table(s)"


def build_command(
    records: Path = typer.Option(
        Path("leaderboards"), "--records", "-r", help="Folder of result records (*.json)."
    ),
    out: Path = typer.Option(Path("site"), "--out", "-o", help="Folder the site is written to."),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 listing the files that would change."
    ),
    min_seeds: int = typer.Option(
        MIN_SEEDS,
        "--min-seeds",
        min=1,
        help="Seed policy: rows with fewer seeds are shown as preliminary and not ranked.",
    ),
) -> None:
    """Build the static leaderboard site from result records.

    Example: kdbench leaderboard build --records leaderboards/ --out site/
    """
    from kdbench.leaderboard.build import SiteError, build_site, check_site

    try:
        report = (check_site if check else build_site)(records, out, min_seeds=min_seeds)
    except SiteError as error:
        fail(str(error))
        return
    _report_unranked(report)
    for warning in report.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)
    typer.echo(_summary(report))
    if not check:
        removed = f", {len(report.removed)} stale removed" if report.removed else ""
        typer.echo(f"{out}/: {report.files} file(s), {report.written} written{removed}")
        return
    if report.up_to_date:
        typer.echo(f"{out}/ is up to date ({report.files} files)")
        return
    for label, names in (
        ("differs", report.differing),
        ("missing", report.missing),
        ("extra", report.extra),
    ):
        for name in names:
            typer.echo(printable(f"{label}: {out / name}"))
    changed = len(report.differing) + len(report.missing) + len(report.extra)
    typer.echo(
        f"{out}/ is out of date ({changed} file(s)); rebuild it with: "
        f"kdbench leaderboard build --records {records} --out {out}",
        err=True,
    )
    raise typer.Exit(1)


def serve_command(
    site: Path = typer.Option(Path("site"), "--dir", "-d", help="The built site folder."),
    port: int = typer.Option(8000, help="Port on localhost (0 picks a free one)."),
) -> None:
    """Serve the built site on localhost for previewing (Ctrl+C stops it).

    Example: kdbench leaderboard serve --dir site/ --port 8000
    """
    from kdbench.leaderboard.serve import preview_server

    try:
        server = preview_server(site, port=port)
    except (FileNotFoundError, OSError) as error:
        fail(str(error))
        return
    host, bound = server.server_address[:2]
    typer.echo(f"serving {site}/ at http://{host}:{bound}/ (Ctrl+C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer, name: str) -> None:
    """Add the ``leaderboard`` command group to the ``kdbench`` app."""
    group = typer.Typer(
        name=name,
        help="Build and preview the static leaderboard site.",
        no_args_is_help=True,
    )
    group.command("build")(build_command)
    group.command("serve")(serve_command)
    app.add_typer(group, name=name)

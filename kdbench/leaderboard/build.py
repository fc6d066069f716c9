"""Build the static site from a records folder, or check that a built site is up to date.

The same records give the same bytes: files are read in sorted order, every page is
rendered from sorted data, and the only date on the site is the newest record's
``created_at``. The site folder lists its own files in :data:`MANIFEST`, so a rebuild removes
pages that are no longer produced and never touches files it did not write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kdbench.errors import SiteError
from kdbench.leaderboard.aggregate import Table, build_tables
from kdbench.leaderboard.costs import device_costs
from kdbench.leaderboard.intake import Intake, read_and_screen, registered_protocol_versions
from kdbench.leaderboard.render import SiteRenderer

#: The file in a built site that lists every file the build wrote.
MANIFEST = ".kdbench-site"


@dataclass
class BuildReport:
    """What a build or a check found."""

    records: Path
    out: Path
    intake: Intake
    tables: list[Table]
    files: int = 0
    written: int = 0
    removed: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return not (self.differing or self.missing or self.extra)


def site_files(intake: Intake) -> tuple[list[Table], Iterator[tuple[str, bytes]]]:
    """The tables of ``intake`` and every file of its site, as ``(site path, bytes)``."""
    tables = build_tables(intake.ranked)
    renderer = SiteRenderer(intake, tables, device_costs(intake.ranked))
    return tables, renderer.files()


def _screened(records: Path, out: Path, protocol_versions: Mapping[str, int] | None) -> Intake:
    records = Path(records)
    if not records.is_dir():
        raise SiteError(f"records folder {records} does not exist (pass --records FOLDER)")
    versions = registered_protocol_versions() if protocol_versions is None else protocol_versions
    return read_and_screen(records, versions, skip=out)


def _manifest_files(out: Path) -> list[str] | None:
    manifest = out / MANIFEST
    if not manifest.is_file():
        return None
    return [line for line in manifest.read_text(encoding="utf-8").splitlines() if line]


def _existing_files(out: Path) -> list[str]:
    if not out.is_dir():
        return []
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def _check_writable(out: Path) -> list[str]:
    """The files a previous build wrote; refuses a non-empty folder that no build wrote."""
    if out.exists() and not out.is_dir():
        raise SiteError(f"--out {out} is a file, not a folder")
    previous = _manifest_files(out)
    if previous is None and out.is_dir() and any(out.iterdir()):
        raise SiteError(
            f"--out {out} is not empty and was not built by kdbench leaderboard build "
            f"(no {MANIFEST} file); choose another folder or empty it"
        )
    return previous or []


class _Writer:
    """Writes site files, skipping those that already hold the same bytes."""

    def __init__(self, out: Path):
        self.out = out
        self.folders: set[Path] = set()
        self.written = 0

    def __call__(self, name: str, data: bytes) -> None:
        path = self.out / name
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                return
        except FileNotFoundError:
            if path.parent not in self.folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.folders.add(path.parent)
        path.write_bytes(data)
        self.written += 1


def _remove_empty_dirs(out: Path) -> None:
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def build_site(
    records: Path, out: Path, *, protocol_versions: Mapping[str, int] | None = None
) -> BuildReport:
    """Render the site for the records under ``records`` into ``out``.

    ``protocol_versions`` gives each protocol's current version; by default the versions of
    the protocols registered in this process.
    """
    out = Path(out)
    intake = _screened(records, out, protocol_versions)
    previous = _check_writable(out)
    tables, files = site_files(intake)
    report = BuildReport(Path(records), out, intake, tables)
    write = _Writer(out)
    produced: list[str] = []
    for name, data in files:
        produced.append(name)
        write(name, data)
    produced.append(MANIFEST)
    write(MANIFEST, ("\n".join(sorted(produced)) + "\n").encode())
    report.files, report.written = len(produced), write.written
    keep = set(produced)
    for name in sorted(set(previous) - keep):
        stale = out / name
        if stale.is_file():
            stale.unlink()
            report.removed.append(name)
    _remove_empty_dirs(out)
    return report


def check_site(
    records: Path, out: Path, *, protocol_versions: Mapping[str, int] | None = None
) -> BuildReport:
    """Compare ``out`` with what :func:`build_site` would write; nothing is written."""
    out = Path(out)
    intake = _screened(records, out, protocol_versions)
    tables, files = site_files(intake)
    report = BuildReport(Path(records), out, intake, tables)
    produced: list[str] = []
    for name, data in files:
        produced.append(name)
        _compare(out, name, data, report)
    produced.append(MANIFEST)
    _compare(out, MANIFEST, ("\n".join(sorted(produced)) + "\n").encode(), report)
    report.files = len(produced)
    report.extra = sorted(set(_existing_files(out)) - set(produced))
    return report


def _compare(out: Path, name: str, data: bytes, report: BuildReport) -> None:
    path = out / name
    try:
        same = path.stat().st_size == len(data) and path.read_bytes() == data
    except (FileNotFoundError, NotADirectoryError):
        report.missing.append(name)
        return
    if not same:
        report.differing.append(name)

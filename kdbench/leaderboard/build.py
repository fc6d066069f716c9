"""Build the static site from a records folder, or check that a built site is up to date.

The same records give the same bytes: files are read in sorted order, every page is
rendered from sorted data, and the only date on the site is the newest record's
``created_at``. The site folder lists its own files in :data:`MANIFEST`.

The build never writes or deletes outside ``--out`` and never writes through a link, even
when the folder was prepared by someone else (``site/`` is committed, so a pull request can
change it): the new site is written into a fresh hidden folder beside ``--out`` and then
swapped in. Files of the old folder that no build wrote (not in its manifest) are moved
across; the rest of the old folder is removed with it, without following links. A manifest
entry is only ever used to tell the build's files from the others, and entries that are
absolute or climb out of the folder are reported and ignored. An interrupted build leaves
the old site as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kdbench.atomic import umask
from kdbench.errors import SiteError
from kdbench.leaderboard.acceptance import MIN_SEEDS
from kdbench.leaderboard.aggregate import Table, build_tables
from kdbench.leaderboard.catalog import Catalog
from kdbench.leaderboard.costs import device_costs
from kdbench.leaderboard.intake import Intake, read_and_screen, registered_protocol_versions
from kdbench.leaderboard.render import SiteRenderer

#: The file in a built site that lists every file the build wrote.
MANIFEST = ".kdbench-site"
#: The longest manifest that is read.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


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
    warnings: list[str] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return not (self.differing or self.missing or self.extra)


def site_files(
    intake: Intake, catalog: Catalog | None = None, min_seeds: int = MIN_SEEDS
) -> tuple[list[Table], Iterator[tuple[str, bytes]]]:
    """The tables of ``intake`` and every file of its site, as ``(site path, bytes)``.

    ``catalog`` explains the protocols and methods; by default the installed ones. Rows
    with fewer than ``min_seeds`` seeds are preliminary (the seed policy).
    """
    tables = build_tables(intake.ranked, min_seeds)
    catalog = Catalog.from_registry() if catalog is None else catalog
    renderer = SiteRenderer(intake, tables, device_costs(intake.ranked), catalog, min_seeds)
    return tables, renderer.files()


def _screened(records: Path, out: Path, protocol_versions: Mapping[str, int] | None) -> Intake:
    records = Path(records)
    if not records.is_dir():
        raise SiteError(f"records folder {records} does not exist (pass --records FOLDER)")
    versions = registered_protocol_versions() if protocol_versions is None else protocol_versions
    return read_and_screen(records, versions, skip=out)


# -- reading a folder without following links ---------------------------------------------


@dataclass
class _Tree:
    """What a site folder holds, found without following a link: its regular files and every
    other entry (links, pipes...) by site path, and its sub-folders."""

    files: dict[str, os.stat_result] = field(default_factory=dict)
    others: dict[str, os.stat_result] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)


def _scan(root: Path) -> _Tree:
    tree = _Tree()
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(root / prefix if prefix else root) as it:
                entries = list(it)
        except OSError as error:
            raise SiteError(f"cannot read {root / prefix}: {error.strerror or error}") from None
        for entry in entries:
            name = f"{prefix}/{entry.name}" if prefix else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                tree.folders.append(name)
                pending.append(name)
            elif stat.S_ISREG(info.st_mode):
                tree.files[name] = info
            else:
                tree.others[name] = info
    return tree


def _read_regular(path: Path, info: os.stat_result, limit: int | None = None) -> bytes | None:
    """The bytes of ``path`` if it is still the regular file ``info`` describes, else None."""
    if limit is not None and info.st_size > limit:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except OSError:
        return None
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read() if limit is None else handle.read(limit + 1)
    finally:
        os.close(fd)


def _same_bytes(path: Path, info: os.stat_result, data: bytes) -> bool:
    return info.st_size == len(data) and _read_regular(path, info) == data


# -- the previous site ----------------------------------------------------------------------


@dataclass
class _Previous:
    """The site folder as found: what it holds and which of its files a build wrote."""

    tree: _Tree
    built: set[str]


def _safe_entry(name: str) -> bool:
    """Whether ``name`` is a plain relative path: no empty, ``.`` or ``..`` part, not
    absolute, no line break."""
    if "\x00" in name or "\n" in name or "\r" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _through_link(name: str, tree: _Tree) -> bool:
    """Whether a folder above ``name`` is a link (or anything but a folder) in ``tree``."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if prefix in tree.others or prefix in tree.files:
            return True
    return False


def _previous_site(out: Path, warnings: list[str]) -> _Previous | None:
    """What ``out`` holds and which files a build wrote; None when it does not exist.

    Refuses a link, a file, and a non-empty folder no build wrote. Manifest entries that do
    not name a path inside ``out`` are ignored, with a line in ``warnings``.
    """
    try:
        info = os.lstat(out)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SiteError(f"--out {out} cannot be read: {error.strerror or error}") from None
    if stat.S_ISLNK(info.st_mode):
        raise SiteError(
            f"--out {out} is a symbolic link; the build does not write through links "
            "(pass the folder it points to)"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise SiteError(f"--out {out} is a file, not a folder")
    tree = _scan(out)
    manifest = tree.files.get(MANIFEST)
    if manifest is None:
        if MANIFEST in tree.others:
            raise SiteError(
                f"{out / MANIFEST} is not a regular file (a link?); remove it and rebuild"
            )
        if tree.files or tree.others or tree.folders:
            raise SiteError(
                f"--out {out} is not empty and was not built by kdbench leaderboard build "
                f"(no {MANIFEST} file); choose another folder or empty it"
            )
        return _Previous(tree, set())
    raw = _read_regular(out / MANIFEST, manifest, MAX_MANIFEST_BYTES)
    if raw is None:
        raise SiteError(f"{out / MANIFEST} cannot be read; remove it and rebuild")
    built = {MANIFEST}
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line:
            continue
        if not _safe_entry(line) or _through_link(line, tree):
            warnings.append(
                f"{out / MANIFEST}: ignored the entry {line[:200]!r}: it is not a path inside "
                f"{out} (absolute, '..', or through a link)"
            )
            continue
        built.add(line)
    return _Previous(tree, built)


def _leftovers(out: Path) -> list[str]:
    """Hidden folders beside ``out`` that an interrupted build left behind."""
    parent = out.parent
    prefixes = (f".{out.name}.kdbench-staging-", f".{out.name}.kdbench-old-")
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith(prefixes))
    except OSError:
        return []
    return [str(parent / n) for n in names]


# -- writing ----------------------------------------------------------------------------------


class _Staging:
    """A fresh folder beside the site where the new site is written, file by file."""

    def __init__(self, out: Path, previous: _Previous | None):
        self.out = out
        self.previous = previous
        self.root = Path(tempfile.mkdtemp(prefix=f".{out.name}.kdbench-staging-", dir=out.parent))
        self.written = 0
        self.folders: set[str] = set()
        self.old: Path | None = None  # where the old site is while the new one moves in

    def _folder_for(self, name: str) -> None:
        parent = name.rpartition("/")[0]
        if parent and parent not in self.folders:
            (self.root / parent).mkdir(parents=True, exist_ok=True)
            parts = parent.split("/")
            self.folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))

    def write(self, name: str, data: bytes) -> None:
        """Write one file; one that holds the same bytes in the old site is linked instead,
        so unchanged files keep their time stamps."""
        if not _safe_entry(name):
            raise SiteError(f"refusing to write {name!r}: not a path inside the site folder")
        self._folder_for(name)
        target = f"{self.root}/{name}"  # a string: no Path object per file
        old = self.previous.tree.files.get(name) if self.previous else None
        if old is not None and _same_bytes(self.out / name, old, data):
            try:
                os.link(self.out / name, target, follow_symlinks=False)
                return
            except (OSError, NotImplementedError):
                pass  # a file system without hard links: write the bytes
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        self.written += 1

    def occupied(self, name: str) -> bool:
        """Whether ``name`` or a folder above it is taken in the new site."""
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            path = self.root.joinpath(*parts[:i])
            if os.path.lexists(path) and not (i < len(parts) and path.is_dir()):
                return True
        return False

    def carry_over(self, report: BuildReport) -> None:
        """Link (or copy) the old site's files that no build wrote into the new site."""
        if self.previous is None:
            return
        tree = self.previous.tree
        for name in sorted(set(tree.files) | set(tree.others)):
            if name in self.previous.built:
                continue
            if name in tree.others:
                report.warnings.append(
                    f"removed {self.out / name}: not a regular file (a built site holds no links)"
                )
                continue
            if self.occupied(name):
                report.removed.append(name)
                continue
            self._folder_for(name)
            source, target = self.out / name, self.root / name
            try:
                os.link(source, target, follow_symlinks=False)
            except (OSError, NotImplementedError):
                shutil.copy2(source, target, follow_symlinks=False)

    def swap_in(self, report: BuildReport) -> None:
        """Replace ``out`` with the new site; the old one is removed without following links."""
        mode = 0o777 & ~umask()
        if self.previous is not None:
            mode = stat.S_IMODE(os.lstat(self.out).st_mode)
        os.chmod(self.root, mode)
        if self.previous is None:
            os.rename(self.root, self.out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.kdbench-old-", dir=self.out.parent))
        os.rmdir(old)  # a fresh sibling name, free for the old site
        os.rename(self.out, old)
        self.old = old
        os.rename(self.root, self.out)
        self.old = None
        try:
            shutil.rmtree(old)
        except OSError as error:
            report.warnings.append(f"the old site is left in {old}: {error}; remove it")

    def discard(self) -> None:
        """Undo an unfinished build: the old site stays (or is put back) where it was."""
        if self.old is not None and not os.path.lexists(self.out):
            os.rename(self.old, self.out)
        shutil.rmtree(self.root, ignore_errors=True)


def build_site(
    records: Path,
    out: Path,
    *,
    protocol_versions: Mapping[str, int] | None = None,
    catalog: Catalog | None = None,
    min_seeds: int = MIN_SEEDS,
) -> BuildReport:
    """Render the site for the records under ``records`` into ``out``.

    ``protocol_versions`` gives each protocol's current version; by default the versions of
    the protocols registered in this process. ``catalog`` explains protocols and methods
    (by default the ones registered in this process).
    """
    given, out = Path(out), Path(os.path.abspath(out))
    if out.parent == out:
        raise SiteError(f"--out {out} cannot be the root folder")
    intake = _screened(records, out, protocol_versions)
    warnings: list[str] = []
    previous = _previous_site(out, warnings)
    warnings += [f"{path} was left by an interrupted build; remove it" for path in _leftovers(out)]
    tables, files = site_files(intake, catalog, min_seeds)
    report = BuildReport(Path(records), given, intake, tables, warnings=warnings)
    try:
        staging = _Staging(out, previous)
    except OSError as error:
        raise SiteError(
            f"cannot write beside --out {out} (the new site is written there first): "
            f"{error.strerror or error}"
        ) from None
    try:
        produced: list[str] = []
        for name, data in files:
            produced.append(name)
            staging.write(name, data)
        produced.append(MANIFEST)
        staging.write(MANIFEST, ("\n".join(sorted(produced)) + "\n").encode())
        staging.carry_over(report)
        staging.swap_in(report)
    except OSError as error:
        staging.discard()
        raise SiteError(f"cannot write the site to {out}: {error.strerror or error}") from None
    except BaseException:
        staging.discard()
        raise
    report.files, report.written = len(produced), staging.written
    if previous is not None:
        stale = previous.built - set(produced)
        report.removed = sorted({*report.removed, *(n for n in stale if n in previous.tree.files)})
    return report


def check_site(
    records: Path,
    out: Path,
    *,
    protocol_versions: Mapping[str, int] | None = None,
    catalog: Catalog | None = None,
    min_seeds: int = MIN_SEEDS,
) -> BuildReport:
    """Compare ``out`` with what :func:`build_site` would write; nothing is written.

    A link where a file should be counts as differing: the build would replace it.
    """
    out = Path(out)
    intake = _screened(records, out, protocol_versions)
    tables, files = site_files(intake, catalog, min_seeds)
    report = BuildReport(Path(records), out, intake, tables)
    tree = _Tree()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        if stat.S_ISDIR(os.lstat(out).st_mode):
            tree = _scan(out)
    produced: list[str] = []
    for name, data in files:
        produced.append(name)
        _compare(out, tree, name, data, report)
    produced.append(MANIFEST)
    _compare(out, tree, MANIFEST, ("\n".join(sorted(produced)) + "\n").encode(), report)
    report.files = len(produced)
    report.extra = sorted(set(tree.files) - set(produced))
    report.extra += sorted(name for name in tree.others if name not in set(produced))
    return report


def _compare(out: Path, tree: _Tree, name: str, data: bytes, report: BuildReport) -> None:
    info = tree.files.get(name)
    if info is None:
        (report.differing if name in tree.others else report.missing).append(name)
    elif not _same_bytes(out / name, info, data):
        report.differing.append(name)

"""Read every record file under a folder and decide which records are ranked.

A record is ranked only when it validates, finished (``status`` ok), is not a smoke run, is
from its protocol's current version, and is the newest record of its unit. Every other file
is kept with the reason, so the build reports it instead of dropping it silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kdbench.errors import RecordError
from kdbench.leaderboard.datasets import dataset_key, teacher_key
from kdbench.leaderboard.devices import DEVICE_PROTOCOL, fingerprint_id
from kdbench.leaderboard.links import SitePages
from kdbench.leaderboard.precisions import record_precision
from kdbench.leaderboard.students import row_student
from kdbench.leaderboard.transfers import row_transfer
from kdbench.record_files import find_record_files, parse_record_bytes, read_record_bytes
from kdbench.results import Record

#: Why a record is not ranked, by reason code, in the order reports list them.
REASONS: dict[str, str] = {
    "invalid": "does not validate against the record schema",
    "failed": "the unit failed",
    "smoke": "smoke run (tiny sizes, never ranked)",
    "superseded": "from a superseded protocol version",
    "newer-protocol": "from a protocol version newer than the installed one",
    "no-device": "device record without a device fingerprint",
    "weights": "its foundation model is not the suite's declared pretrained weights",
    "duplicate": "another record of the same unit is used",
}


@dataclass(frozen=True)
class RecordFile:
    """One file under the records folder; ``record`` is None when it does not validate,
    ``raw`` is None when it could not be read."""

    path: str
    raw: bytes | None
    record: Record | None
    problem: str | None = None


@dataclass(frozen=True)
class Unranked:
    """A record file that is shown and reported but not ranked, with the reason."""

    file: RecordFile
    reason: str
    detail: str


@dataclass
class Intake:
    """Every record file, split into the ranked ones and the others."""

    ranked: list[RecordFile] = field(default_factory=list)
    unranked: list[Unranked] = field(default_factory=list)
    current_versions: dict[str, int] = field(default_factory=dict)

    @property
    def files(self) -> list[RecordFile]:
        """Every file read, ranked or not, sorted by path."""
        return sorted([*self.ranked, *(u.file for u in self.unranked)], key=lambda f: f.path)

    def pages(self) -> SitePages:
        """Where the method, protocol and run pages of these records live."""
        records = [f.record for f in self.files if f.record is not None]
        return SitePages(
            methods=(r.method.name for r in records),
            protocols=((r.suite, r.protocol.name) for r in records),
            runs=(r.run_id for r in records),
        )

    def run_pages(self, pages: SitePages | None = None) -> dict[str, str]:
        """The provenance page of each valid record file, by path (one page per run_id: a
        repeated run_id's page belongs to its first file)."""
        pages = pages or self.pages()
        out: dict[str, str] = {}
        owners: dict[str, str] = {}
        for file in self.files:
            if file.record is not None:
                page = pages.run(file.record.run_id)
                if owners.setdefault(page, file.path) == file.path:
                    out[file.path] = page
        return out

    def reason_counts(self) -> dict[str, int]:
        """How many records are unranked for each reason, in :data:`REASONS` order."""
        counts = {reason: 0 for reason in REASONS}
        for item in self.unranked:
            counts[item.reason] += 1
        return {reason: n for reason, n in counts.items() if n}


def _relative(path: Path, folder: Path) -> str:
    """``path`` below ``folder`` as a site path (``/``-separated); string slicing where the
    path starts with the folder, as every path found under it does."""
    prefix, text = os.path.join(str(folder), ""), str(path)
    if text.startswith(prefix) and len(text) > len(prefix):
        return text[len(prefix) :].replace(os.sep, "/")
    return "/".join(path.relative_to(folder).parts) or "."


def read_record_files(folder: Path, skip: Path | None = None) -> list[RecordFile]:
    """Every ``*.json`` under ``folder`` (sorted by path), parsed and validated.

    Files under ``skip`` are left out: a site built inside its records folder holds copies
    of the records that must not be read back as records. A sub-folder that cannot be
    searched, or a link to one, is kept as an invalid entry so that it is reported.
    """
    paths, problems = find_record_files([folder], skip=skip)
    files = [
        RecordFile(_relative(p.path, folder), None, None, f"{p.field}: {p.message}")
        for p in problems
    ]
    for path in paths:
        relative = _relative(path, folder)
        try:
            raw = read_record_bytes(path)
        except RecordError as error:
            files.append(RecordFile(relative, None, None, _summary(error)))
            continue
        try:
            record = parse_record_bytes(raw, Path(relative))
        except RecordError as error:
            files.append(RecordFile(relative, raw, None, _summary(error)))
        else:
            files.append(RecordFile(relative, raw, record))
    return sorted(files, key=lambda f: f.path)


def _summary(error: RecordError) -> str:
    first = error.problems[0]
    more = len(error.problems) - 1
    return f"{first.field}: {first.message}" + (f" (+{more} more)" if more else "")


def registered_protocol_versions() -> dict[str, int]:
    """The version of every protocol registered in this process, by name."""
    from kdbench.plugins import get_registry

    versions = {}
    for component in get_registry().components("protocols"):
        version = getattr(component.load(), "version", None)
        if isinstance(version, int):
            versions[component.name] = version
    return versions


def current_versions(records: Iterable[Record], registered: Mapping[str, int]) -> dict[str, int]:
    """Each protocol's current version: the registered one, else the highest finished one.

    Smoke and failed records do not count, so a smoke test of a new version does not
    supersede the ranked results of the old one.
    """
    versions: dict[str, int] = {}
    for record in records:
        name = record.protocol.name
        if record.status == "ok" and not record.smoke:
            versions[name] = max(versions.get(name, 0), record.protocol.version)
    versions.update({name: v for name, v in registered.items() if name in versions})
    return dict(sorted(versions.items()))


def table_device(record: Record) -> str:
    """The device a record's table is tied to: its fingerprint id for device records, else ''."""
    if record.protocol.name == DEVICE_PROTOCOL and record.device_fingerprint is not None:
        return fingerprint_id(record.device_fingerprint)
    return ""


def table_key(record: Record) -> tuple[object, ...]:
    """The leaderboard table a record belongs to: suite, protocol version, dataset (name and
    manifest), teacher, for device records the device, and the precision the student is
    scored at (``fp32`` unless ``kdbench run --precision`` said otherwise)."""
    return (
        record.suite,
        record.protocol.name,
        record.protocol.version,
        dataset_key(record),
        teacher_key(record),
        table_device(record),
        record_precision(record),
    )


def unit_key(record: Record) -> tuple[object, ...]:
    """What makes two records runs of the same unit (the newer one is used): the same
    method with another student or transfer set, on another dataset (name and manifest),
    from another teacher, on another device or at another precision is another unit."""
    return (
        *table_key(record),
        record.method.name,
        record.method.version,
        row_student(record),
        row_transfer(record),
        record.seed,
    )


def _screen_one(file: RecordFile, versions: Mapping[str, int]) -> tuple[str, str] | None:
    record = file.record
    if record is None:
        return "invalid", file.problem or "does not validate"
    if record.status == "failed":
        error = record.error
        return "failed", f"{error.type}: {error.message}" if error else "failed"
    if record.smoke:
        return "smoke", "flagged smoke"
    name, version = record.protocol.name, record.protocol.version
    current = versions.get(name)
    if current is not None and version < current:
        return "superseded", f"{name}@{version}; the current version is {name}@{current}"
    if current is not None and version > current:
        return "newer-protocol", (
            f"{name}@{version}; this kdbench has {name}@{current} (upgrade kdbench to rank it)"
        )
    if name == DEVICE_PROTOCOL and record.device_fingerprint is None:
        return "no-device", "latency and energy need the device they were measured on"
    if name != DEVICE_PROTOCOL:  # cost does not depend on weights; every score does
        wrong = foreign_weights(record)
        if wrong is not None:
            return "weights", wrong
    return None


def foreign_weights(record: Record) -> str | None:
    """Why ``record``'s teacher (its foundation model) is not the suite's declared
    pretrained weights, if it is not: random weights, or a sha256 other than the one the
    suite declares."""
    from kdbench.models.weights_identity import declared_weights

    teacher = record.components.get("teacher")
    if teacher is None:
        return None
    weights = teacher.weights
    if (weights is not None and weights.source == "random") or teacher.options.get(
        "pretrained"
    ) is False:
        return f"teacher {teacher.name} ran with random weights (pretrained: false)"
    declared = declared_weights(record.suite, teacher.name)
    if declared and weights is not None and weights.sha256 and weights.sha256 != declared:
        return (
            f"teacher {teacher.name} ran with weights sha256 {weights.sha256[:12]}, not the "
            f"{record.suite} suite's {declared[:12]}"
        )
    return None


def _newest_per_unit(files: Iterable[RecordFile]) -> dict[tuple[object, ...], RecordFile]:
    """The newest file of each unit (by ``created_at``, then path)."""
    newest: dict[tuple[object, ...], RecordFile] = {}
    for file in files:
        assert file.record is not None
        key = unit_key(file.record)
        kept = newest.get(key)
        if kept is None or (file.record.created_at, file.path) > (
            kept.record.created_at,  # type: ignore[union-attr]
            kept.path,
        ):
            newest[key] = file
    return newest


def screen(files: Iterable[RecordFile], registered: Mapping[str, int]) -> Intake:
    """Split ``files`` into ranked and unranked records, each unranked one with its reason."""
    files = sorted(files, key=lambda f: f.path)
    versions = current_versions((f.record for f in files if f.record is not None), registered)
    intake = Intake(current_versions=versions)
    run_ids: dict[str, str] = {}
    candidates: list[RecordFile] = []
    for file in files:
        verdict = _screen_one(file, versions)
        if file.record is not None:
            first = run_ids.setdefault(file.record.run_id, file.path)
            if first != file.path:  # checked first: a run_id names one provenance page
                verdict = ("duplicate", f"run_id {file.record.run_id} is also in {first}")
        if verdict is None:
            candidates.append(file)
        else:
            intake.unranked.append(Unranked(file, *verdict))
    newest = _newest_per_unit(candidates)
    for file in candidates:
        used = newest[unit_key(file.record)]  # type: ignore[arg-type]
        if used is file:
            intake.ranked.append(file)
        else:
            detail = f"same unit as {used.path}, which is newer"
            intake.unranked.append(Unranked(file, "duplicate", detail))
    intake.unranked.sort(key=lambda u: u.file.path)
    return intake


def read_and_screen(
    folder: Path, registered: Mapping[str, int], skip: Path | None = None
) -> Intake:
    """:func:`read_record_files` then :func:`screen`."""
    return screen(read_record_files(folder, skip), registered)

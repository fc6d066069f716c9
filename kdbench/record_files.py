"""Record files: strict parsing, reading without following links or blocking, atomic
writing, finding the records under a folder, and validating them with every problem named
by file and field. The record schema itself is :mod:`kdbench.results`; the JSON parse below
it is :mod:`kdbench.record_json`."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from kdbench import record_json
from kdbench.atomic import atomic_write_text
from kdbench.errors import RecordError
from kdbench.results import (
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    MIGRATIONS,
    SCHEMA_VERSION,
    SURROGATE,
    Record,
    reading_strictly,
)

# -- reading and writing -----------------------------------------------------------------


@dataclass
class Problem:
    """One thing wrong with one file."""

    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


def _field_name(parts: Iterable[object]) -> str:
    """A field's path as ``method.name`` or ``metrics.0.value``, safe to print and encode."""
    from kdbench.terminal import printable

    return ".".join(printable(str(p)) for p in parts) or "(record)"


def _surrogate_field(data: Any) -> str | None:
    """The field of the first string (value or key) that is not valid Unicode, if any."""
    stack: list[tuple[Any, tuple[object, ...]]] = [(data, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if SURROGATE.search(value):
                return _field_name(where)
        elif isinstance(value, dict):
            for key, item in value.items():
                if SURROGATE.search(key):
                    return _field_name((*where, key))
                stack.append((item, (*where, key)))
        elif isinstance(value, list):
            stack.extend((item, (*where, i)) for i, item in enumerate(value))
    return None


def _problems_from(path: Path, error: ValidationError) -> list[Problem]:
    out = []
    for item in error.errors():
        out.append(Problem(path, _field_name(item["loc"]), item["msg"]))
    return out


def migrate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring a record dict to :data:`SCHEMA_VERSION` or raise :class:`RecordError`."""
    version = data.get("schema_version")
    if type(version) is not int:
        raise RecordError(path, [Problem(path, "schema_version", "missing or not an integer")])
    if version > SCHEMA_VERSION:
        raise RecordError(
            path,
            [
                Problem(
                    path,
                    "schema_version",
                    f"{version} was written by a newer kdbench (this one reads up to "
                    f"{SCHEMA_VERSION}); upgrade kdbench",
                )
            ],
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise RecordError(
                path,
                [
                    Problem(
                        path,
                        "schema_version",
                        f"{version} is no longer supported and has no migration; re-run the "
                        f"unit with this kdbench to get a schema {SCHEMA_VERSION} record",
                    )
                ],
            )
        data = step(data)
        version = data["schema_version"]
    return data


def _file_problem(path: Path, message: str) -> RecordError:
    return RecordError(path, [Problem(path, "(file)", message)])


def parse_record(text: str, path: Path) -> Record:
    """Parse and validate a record's JSON text strictly (see the module's docstring)."""
    if record_json.too_deep(text):
        raise _file_problem(path, f"nested more than {MAX_DEPTH} levels deep")
    try:
        data = record_json.loads(text)
    except record_json.DuplicateKey as error:
        field = _field_name([error.key])
        message = "appears twice in one object (which of the two counts would be ambiguous)"
        raise RecordError(path, [Problem(path, field, message)]) from None
    except RecursionError:
        raise _file_problem(path, f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:
        raise _file_problem(path, f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise _file_problem(path, "a record is a JSON object")
    # text decoded from UTF-8 holds no surrogate, so only an escape (\\udxxx) can add one
    field = _surrogate_field(data) if record_json.SURROGATE_ESCAPE.search(text) else None
    if field is not None:
        message = "is not valid Unicode text (a lone surrogate)"
        raise RecordError(path, [Problem(path, field, message)])
    data = migrate(data, path)
    try:
        with reading_strictly():
            return Record.model_validate(data, strict=True)
    except ValidationError as error:
        raise RecordError(path, _problems_from(path, error)) from None


def parse_record_bytes(raw: bytes, path: Path) -> Record:
    """:func:`parse_record` of a file's bytes, which must be UTF-8."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _file_problem(path, "is UTF-16 text; records are UTF-8 JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _file_problem(
            path, f"not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start})"
        ) from None
    return parse_record(text, path)


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def read_record_bytes(path: str | Path) -> bytes:
    """The bytes of a record file, read without following a link or blocking on a pipe.

    Raises :class:`RecordError` for a symbolic link, anything but a regular file, and a file
    over :data:`MAX_RECORD_BYTES`.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise _file_problem(path, "no such file or folder") from None
    except OSError as error:
        raise _file_problem(path, f"cannot be read: {error.strerror or error}") from None
    too_big = f"cannot be read: over the limit of {MAX_RECORD_BYTES} bytes for a record"
    if stat.S_ISLNK(info.st_mode):
        raise _file_problem(
            path, "cannot be read: it is a symbolic link, and links are not followed"
        )
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise _file_problem(path, f"cannot be read: it is {kind}, not a regular file")
    if info.st_size > MAX_RECORD_BYTES:
        raise _file_problem(path, too_big)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise _file_problem(path, f"cannot be read: {error.strerror or error}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            info.st_dev,
            info.st_ino,
        ):
            raise _file_problem(path, "cannot be read: it changed while it was being opened")
        chunks = []
        size = 0
        while size <= MAX_RECORD_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_RECORD_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise _file_problem(path, f"cannot be read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if size > MAX_RECORD_BYTES:
        raise _file_problem(path, too_big)
    return b"".join(chunks)


def load_record(path: str | Path) -> Record:
    """Read, migrate and validate one record file."""
    path = Path(path)
    return parse_record_bytes(read_record_bytes(path), path)


def dump_record(record: Record) -> str:
    data = record.model_dump(mode="json")
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_record(record: Record, path: str | Path) -> Path:
    """Validate ``record`` and write it atomically to ``path``."""
    path = Path(path)
    record = Record.model_validate(record.model_dump())
    atomic_write_text(path, dump_record(record))
    return path


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _odd_name(name: str) -> str | None:
    """Why a file name cannot be a record's (a site path, a manifest line), if it cannot."""
    if SURROGATE.search(name):
        return "the name is not valid UTF-8; rename it"
    if _CONTROL.search(name):
        return "the name holds a control character (a line break?); rename it"
    return None


def _display_name(name: str) -> str:
    """A file name with bytes that are not UTF-8 written as ``\\xff``, controls as ``\\x0a``."""
    from kdbench.terminal import printable

    return printable(os.fsencode(name).decode("utf-8", "backslashreplace"))


def find_record_files(
    paths: Iterable[str | Path], *, skip: Path | None = None
) -> tuple[list[Path], list[Problem]]:
    """Every ``*.json`` under the given files and folders, sorted, each once; and a problem
    for each folder that cannot be searched.

    Hidden entries (``.name``) are left out. Links are never followed below a folder given
    here: a link named ``*.json`` is listed (reading it is refused), a link to a folder is a
    problem. So are unreadable folders, and names that are not valid UTF-8 or hold a control
    character. ``skip`` is a
    folder not to search (a site built inside its records folder).
    """
    files: list[Path] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    skipped = os.path.realpath(skip) if skip is not None else None
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            if root not in seen:
                seen.add(root)
                files.append(root)
            continue
        found: list[Path] = []
        folders = [root]
        while folders:
            folder = folders.pop()
            if skipped is not None and os.path.realpath(folder) == skipped:
                continue
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as error:
                message = f"cannot be read: {error.strerror or error}"
                problems.append(Problem(folder, "(folder)", message))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = folder / entry.name
                is_json = entry.name.endswith(".json")
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_link = entry.is_symlink()
                    link_to_dir = is_link and not is_json and entry.is_dir()
                except OSError as error:
                    problems.append(Problem(path, "(file)", f"cannot be read: {error}"))
                    continue
                odd = _odd_name(entry.name)
                if odd and (is_json or is_dir or link_to_dir):
                    problems.append(Problem(folder / _display_name(entry.name), "(file)", odd))
                    continue
                if link_to_dir:
                    message = "is a symbolic link to a folder, and links are not followed"
                    problems.append(Problem(path, "(folder)", message))
                    continue
                if is_dir:
                    folders.append(path)
                if is_json:
                    found.append(path)
        for path in sorted(found):
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files, problems


def iter_record_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every ``*.json`` under the given files and folders (see :func:`find_record_files`)."""
    yield from find_record_files(paths)[0]


def validate_paths(paths: Iterable[str | Path]) -> tuple[int, list[Problem]]:
    """Check every record under ``paths``; returns (files checked, problems).

    A folder that cannot be searched is a problem too, so it is never silently skipped.
    """
    files, problems = find_record_files(paths)
    for f in files:
        try:
            load_record(f)
        except RecordError as error:
            problems.extend(error.problems)
    return len(files), problems

"""Reading a dataset's on-disk layout: whitespace-separated index files, CSV and JSON
annotation files, and folders of images. Every error names the file and what was expected."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdbench.data.base import DatasetError, require

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def read_lines(path: Path, what: str) -> list[str]:
    """The non-blank lines of a text file, stripped."""
    require(path, what)
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_table(path: Path, fields: Sequence[str], what: str) -> list[tuple[str, ...]]:
    """Rows of a whitespace-separated index file with ``fields`` per line; the last field
    takes the rest of the line, so it may hold spaces (class names such as ``Cessna 172``)."""
    rows = []
    layout = " ".join(f"<{name}>" for name in fields)
    require(path, what)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = tuple(line.split(maxsplit=len(fields) - 1))
        if len(row) != len(fields):
            raise DatasetError(f"{path}, line {number}: expected '{layout}', got {line!r}")
        rows.append(row)
    return rows


def read_mapping(path: Path, fields: tuple[str, str], what: str) -> dict[str, str]:
    """A two-field index file as a dict from its first field; a repeated key is an error."""
    mapping: dict[str, str] = {}
    for key, value in read_table(path, fields, what):
        if key in mapping:
            raise DatasetError(f"{path}: {fields[0]} {key!r} appears more than once")
        mapping[key] = value
    return mapping


def read_csv(path: Path, columns: Sequence[str], what: str) -> list[dict[str, str]]:
    """Rows of a CSV file with a header that holds at least ``columns``."""
    require(path, what)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: header {','.join(header) or '(empty)'} lacks column(s) "
                f"{', '.join(missing)}; expected a header line {','.join(columns)}"
            )
        return [{c: (row[c] or "").strip() for c in columns} for row in reader]


def read_json(path: Path, keys: Sequence[str], what: str) -> dict[str, Any]:
    """A JSON object holding at least ``keys``."""
    require(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); expected {what}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a JSON {type(data).__name__}; expected {what}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise DatasetError(f"{path} lacks the key(s) {', '.join(missing)}; expected {what}")
    return data


def list_folders(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``, sorted by name, hidden ones skipped."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (and below it when ``recursive``), sorted, hidden ones skipped."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in candidates
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.startswith(".")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )

"""Atomic file writes: write a temporary file beside the target, fsync, then rename.

A crash at any point leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def umask() -> int:
    """The process's umask (read without changing it for longer than a call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~umask()


def _temporary(target: Path) -> tuple[int, str]:
    """A temporary file beside ``target`` with the permissions a plain ``open`` would give."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.chmod(tmp, _MODE)
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the block exits without error."""
    if mode not in {"wb", "w"}:
        raise ValueError("atomic_open supports modes 'wb' and 'w'")
    target = Path(path)
    fd, tmp = _temporary(target)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_save(path: str | os.PathLike[str], save: Callable[[str], None]) -> None:
    """Atomically produce ``path`` with a library function that writes to a filename."""
    target = Path(path)
    fd, tmp = _temporary(target)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, _MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

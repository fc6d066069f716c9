"""Ctrl-C: quiet and quick exits, and telling a user's Ctrl-C from a plugin's ``KeyboardInterrupt``.

Only the standard library is imported here, so the command line can use this module before
anything heavy is loaded.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType

EXIT_INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``str()`` says which unit stopped and how to resume."""

    def __init__(
        self,
        unit: str | None,
        position: int,
        total: int,
        written: int,
        out: os.PathLike[str] | str,
        resume_option: str | None = None,
    ) -> None:
        super().__init__(unit or "")
        self.unit = unit
        self.position = position
        self.total = total
        self.written = written
        self.out = out
        self.resume_option = resume_option
        """An option the command must be re-run with to resume (``--resume never`` would
        start every unit over), or ``None``: the same command resumes."""

    def __str__(self) -> str:
        where = (
            f"while running {self.unit} (unit {self.position} of {self.total})"
            if self.unit
            else "before the first unit"
        )
        again = (
            f"run the same command with {self.resume_option}"
            if self.resume_option
            else "run the same command again"
        )
        return (
            f"interrupted {where}; {self.written} record(s) written by this run are in "
            f"{self.out}/. To resume, {again}: finished units are skipped and an unfinished "
            "one continues from its last checkpoint, if it saved one."
        )


def exit_now(code: int = EXIT_INTERRUPTED) -> None:
    """Flush stdout and stderr and end the process at once.

    A normal exit tears the interpreter down, which takes one to several seconds once torch
    (and more with CUDA) is loaded; after Ctrl-C nothing is left to clean up: records and
    caches are written atomically, and their temporary files are removed as the interrupt
    unwinds.
    """
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(code)


def _quiet_excepthook(previous):  # type: ignore[no-untyped-def]
    def hook(
        kind: type[BaseException], value: BaseException, traceback: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print("\nkdbench: interrupted", file=sys.stderr)
            exit_now(EXIT_INTERRUPTED)
            return
        previous(kind, value, traceback)

    hook.kdbench_quiet = True  # type: ignore[attr-defined]
    return hook


def quiet_uncaught_interrupts() -> None:
    """Make a Ctrl-C that no code catches (while the command line is still importing) end
    the process with one line and exit status 130 instead of a traceback."""
    if not getattr(sys.excepthook, "kdbench_quiet", False):
        sys.excepthook = _quiet_excepthook(sys.excepthook)


class InterruptWatch:
    """Whether a real SIGINT (the user's Ctrl-C) arrived while the watch was on."""

    def __init__(self) -> None:
        self.signalled = False

    def from_user(self, error: BaseException) -> bool:
        """True when ``error`` is the user's Ctrl-C rather than an exception code raised."""
        return isinstance(error, KeyboardInterrupt) and self.signalled


@contextmanager
def watch_interrupts() -> Iterator[InterruptWatch]:
    """Record real SIGINTs while the block runs, still raising ``KeyboardInterrupt`` as usual.

    Code that runs untrusted code (plugins) uses it to tell the user's Ctrl-C, which must
    stop the command, from a ``KeyboardInterrupt`` the code raised itself, which is a bug in
    that code. Outside the main thread, or when SIGINT is ignored or left to the operating
    system, no SIGINT can become a ``KeyboardInterrupt`` here, so every one is code's own.
    """
    watch = InterruptWatch()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield watch
        return

    def note_and_forward(signum: int, frame: object) -> None:
        watch.signalled = True
        previous(signum, frame)

    signal.signal(signal.SIGINT, note_and_forward)
    try:
        yield watch
    finally:
        signal.signal(signal.SIGINT, previous)

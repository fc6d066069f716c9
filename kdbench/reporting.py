"""How commands report what stops them: an error a user can fix is one ``error:`` line and
exit code 2, Ctrl-C one line saying what was interrupted and exit code 130. The main
command line and the command groups beside the code they drive (``device``, ``world``,
``leaderboard``) all report this way."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from kdbench.interrupts import EXIT_INTERRUPTED

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` (control characters made visible) as one ``error:`` line and exit."""
    from kdbench.terminal import printable

    typer.echo(f"error: {printable(message, newlines=True)}", err=True)
    raise typer.Exit(code)


_interrupt_reported = False


def report_interrupt(what: BaseException | None = None) -> None:
    """Say that Ctrl-C stopped the command, and what it stopped if known."""
    global _interrupt_reported
    _interrupt_reported = True
    from kdbench.terminal import printable

    typer.echo(f"\nkdbench: {printable(str(what or 'interrupted'))}", err=True)


def user_errors(func: F) -> F:
    """Turn the errors a user can fix into one ``error:`` line and exit code 2, and Ctrl-C
    into one line saying what was interrupted and exit code 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kdbench.errors import UserError
        from kdbench.interrupts import RunInterrupted

        try:
            return func(*args, **kwargs)
        except (UserError, ValueError) as error:
            fail(str(error))
        except BrokenPipeError:
            raise
        except OSError as error:  # permissions, a full disk, a file where a folder should be
            fail(str(error))
        except KeyboardInterrupt as interrupt:
            report_interrupt(interrupt if isinstance(interrupt, RunInterrupted) else None)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def interrupt_reported() -> bool:
    """Whether a Ctrl-C was already reported by a command."""
    return _interrupt_reported

"""How many worker processes a step may start: an environment variable when it is set,
else a default from the CPUs this process may use."""

from __future__ import annotations

import os

MAX_WORKERS = 8
"""The most worker processes a default starts, however many CPUs there are."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(variable: str, default: int) -> int:
    """The whole number in the environment variable ``variable``, else ``default``; a
    :class:`ValueError` naming the variable for anything but a non-negative integer."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        workers = int(raw)
    except ValueError:
        raise ValueError(
            f"{variable}={raw!r}: give a whole number of worker processes (0 runs the work "
            "in this process)"
        ) from None
    if workers < 0:
        raise ValueError(f"{variable}={raw!r} cannot be negative")
    return workers

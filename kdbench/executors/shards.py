"""``kdbench run --shard i/n``: any scheduler runs a fixed slice of the plan."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from kdbench.errors import ConfigError

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard 2 of 8, counted from 0 (a Slurm array index)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--shard {text!r}: write it as INDEX/COUNT, e.g. --shard 0/4")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ConfigError(
            f"--shard {text}: the index counts from 0 and must be below the count "
            f"(0/{max(count, 1)} to {max(count, 1) - 1}/{max(count, 1)})"
        )
    return index, count


def shard(units: Sequence[T], index: int, count: int) -> list[T]:
    """The units of shard ``index`` of ``count``: every ``count``-th unit of the whole plan,
    starting at ``index``. Taken before finished units are dropped, so a unit's shard never
    changes between runs."""
    return list(units[index::count])

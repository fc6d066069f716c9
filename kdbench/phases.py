"""Where a unit's wall time goes: a clock that splits it into phases.

The runner starts a :class:`PhaseClock` for each unit; the library functions a unit spends
its time in say which phase they are, with :func:`phase` (a block) or :func:`in_phase` (a
function). Phases nest exclusively: entering one pauses the one outside it, so the phases
add up to the time the clock ran, and whatever no phase claims is ``other``.

A *weak* phase is a default: it applies only where no explicit phase is running. Training
(:func:`kdbench.train.fit`) is weakly ``student`` and inference
(:func:`kdbench.train.predict`) weakly ``evaluation``; the same calls inside the teacher's
adaptation or its frozen outputs count as ``teacher``, because those are explicit.

Outside a unit (no clock running) the markers cost one context-variable lookup.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from kdbench.terminal import text_table

#: The phases, in the order they are reported; ``other`` is what none of them claims.
PHASES = ("data", "teacher", "student", "evaluation", "writing", "other")

_F = TypeVar("_F", bound=Callable[..., Any])


class PhaseClock:
    """Wall seconds per phase, the innermost running phase counting."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._seconds = dict.fromkeys(PHASES, 0.0)
        self._stack: list[tuple[str, bool]] = []  # (phase, weak)
        self._since = clock()

    def _switch(self) -> None:
        """Charge the time since the last switch to the running phase."""
        now = self._clock()
        running = self._stack[-1][0] if self._stack else "other"
        self._seconds[running] += now - self._since
        self._since = now

    @contextmanager
    def phase(self, name: str, *, weak: bool = False) -> Iterator[None]:
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; phases are {', '.join(PHASES)}")
        if weak and self._stack and not self._stack[-1][1]:
            yield  # an explicit phase is running: it keeps the time
            return
        self._switch()
        self._stack.append((name, weak))
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def seconds(self) -> dict[str, float]:
        """Seconds per phase so far (every phase present, ``other`` included)."""
        self._switch()
        return dict(self._seconds)


_CLOCK: ContextVar[PhaseClock | None] = ContextVar("kdbench_phase_clock", default=None)


@contextmanager
def timing(clock: PhaseClock) -> Iterator[PhaseClock]:
    """Run the block with ``clock`` counting the phases marked in it."""
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


@contextmanager
def phase(name: str, *, weak: bool = False) -> Iterator[None]:
    """Mark the block as phase ``name`` (see the module's docstring for ``weak``)."""
    clock = _CLOCK.get()
    if clock is None:
        yield
        return
    with clock.phase(name, weak=weak):
        yield


def in_phase(name: str, *, weak: bool = False) -> Callable[[_F], _F]:
    """Decorate a function whose calls are phase ``name``."""

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _CLOCK.get() is None:
                return fn(*args, **kwargs)
            with phase(name, weak=weak):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def format_profile(rows: list[tuple[str, float, dict[str, float] | None]]) -> str:
    """The table ``kdbench run --profile`` prints: one row per unit (its label, total
    seconds and phases; ``None`` for a record without them), then the sum over units with
    each phase's share of the total."""
    header = ("unit", "total s", *PHASES)
    table: list[tuple[str, ...]] = []
    sums = dict.fromkeys(PHASES, 0.0)
    total_sum = 0.0
    for label, total, phases in rows:
        if phases is None:
            table.append((label, f"{total:.1f}", *("–" for _ in PHASES)))
            continue
        total_sum += total
        for name in PHASES:
            sums[name] += phases.get(name, 0.0)
        table.append((label, f"{total:.1f}", *(f"{phases.get(n, 0.0):.1f}" for n in PHASES)))
    if total_sum > 0:
        table.append(
            (
                "all units",
                f"{total_sum:.1f}",
                *(f"{sums[n]:.1f} ({100 * sums[n] / total_sum:.0f}%)" for n in PHASES),
            )
        )
    return "\n".join(text_table(header, table, numeric=True))

"""Scatter plots of score against cost with the Pareto frontier, written as SVG at build time.

No plotting library: a few dozen SVG elements per plot, every text escaped, coordinates
rounded to one decimal so the same points always give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from kdbench.leaderboard.formatting import format_number
from kdbench.leaderboard.pareto import pareto_front

WIDTH, HEIGHT = 640, 380
#: The smallest cost a logarithmic axis shows; below it the axis is linear.
LOG_FLOOR = 1e-100
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 20, 50
#: About how wide one character of a point label is, to keep labels inside the figure.
LABEL_CHAR_PX = 6.2


@dataclass(frozen=True)
class Point:
    """One row on a plot: its cost (x), its score (y), its label and where it links.

    Reference rows and preliminary rows (fewer seeds than the seed policy asks) are drawn for
    context and never on the front, as neither is ranked."""

    cost: float
    score: float
    label: str
    reference: bool = False
    href: str | None = None
    preliminary: bool = False

    @property
    def ranked(self) -> bool:
        """Whether the point competes for the front."""
        return not (self.reference or self.preliminary)


@dataclass(frozen=True)
class Scale:
    """Maps data values to pixels along one axis, linear or logarithmic."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        f = self._t(value)
        lo, hi = self._t(self.low), self._t(self.high)
        frac = 0.5 if hi == lo else (f - lo) / (hi - lo)
        return self.start + frac * (self.end - self.start)

    def _t(self, value: float) -> float:
        return math.log10(value) if self.log else value


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering ``low..high``.

    Ticks are multiples of the step, never a running sum, so a step below the values'
    precision cannot loop forever; at most ``count + 1`` distinct ticks come back.
    """
    if not high > low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    if not (raw > 0 and math.isfinite(raw)):  # a span too small (or large) for a float
        return [low, high]
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    ticks: list[float] = []
    for k in range(first, min(last, first + count) + 1):
        value = round(k * step, 12)
        if not ticks or value != ticks[-1]:
            ticks.append(value)
    return ticks


def log_ticks(low: float, high: float, most: int = 12) -> list[float]:
    """Powers of ten in ``low..high``, with 2x and 5x when the range spans under 2.5 decades;
    over more than ``most`` decades, every second (third...) power only."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    multiples = (1, 2, 5) if math.log10(high / low) < 2.5 else (1,)
    stride = max(1, math.ceil((last - first) / most))
    exponents = range(first, last + 1, stride)
    ticks = [m * 10.0**e for e in exponents for m in multiples]
    return [t for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]


def tick_label(value: float) -> str:
    """``0.2``, ``50``, ``1e-05``: the shortest form of a round tick value."""
    return f"{value:.6g}"


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    if log:
        return low / 1.25, high * 1.25
    span = high - low or abs(high) or 1.0
    return low - 0.08 * span, high + 0.08 * span


def _num(value: float) -> str:
    return f"{value:.1f}"


def frontier(points: Sequence[Point], *, higher_is_better: bool) -> list[int]:
    """Indices (ascending) of the ranked points on the Pareto front: lower cost and a better
    score; reference and preliminary rows are drawn for context and never on the front."""
    ranked = [i for i, p in enumerate(points) if p.ranked]
    front = pareto_front(
        [(points[i].cost, points[i].score) for i in ranked], higher_is_better=higher_is_better
    )
    return [ranked[k] for k in front]


def scatter_svg(
    points: Sequence[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    higher_is_better: bool,
) -> Markup:
    """An SVG scatter of ``points`` with the Pareto frontier of the ranked points.

    The cost axis is logarithmic when every cost is at least :data:`LOG_FLOOR` and they span
    20x or more. Points must be finite (records' numbers are bounded, so means are).
    """
    if not points:
        raise ValueError("a plot needs at least one point")
    costs = [p.cost for p in points]
    scores = [p.score for p in points]
    if not all(math.isfinite(v) for v in (*costs, *scores)):
        raise ValueError("plotted values must be finite")
    log_x = min(costs) >= LOG_FLOOR and max(costs) / min(costs) >= 20
    x_low, x_high = _padded(min(costs), max(costs), log_x)
    y_low, y_high = _padded(min(scores), max(scores), False)
    x = Scale(x_low, x_high, LEFT, WIDTH - RIGHT, log_x)
    y = Scale(y_low, y_high, HEIGHT - BOTTOM, TOP)

    front = frontier(points, higher_is_better=higher_is_better)
    on_front = set(front)

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    # axes and grid
    x_ticks = log_ticks(x_low, x_high) if log_x else nice_ticks(x_low, x_high)
    for tick in x_ticks:
        px = _num(x(tick))
        out.append(
            f'<line class="grid" x1="{px}" y1="{TOP}" x2="{px}" y2="{HEIGHT - BOTTOM}"/>'
            f'<text class="tick" x="{px}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{escape(tick_label(tick))}</text>"
        )
    for tick in nice_ticks(y_low, y_high):
        py = _num(y(tick))
        out.append(
            f'<line class="grid" x1="{LEFT}" y1="{py}" x2="{WIDTH - RIGHT}" y2="{py}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{py}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(tick_label(tick))}</text>'
        )
    out.append(
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}"/>'
        f'<text class="axis-label" x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 10}" '
        f'text-anchor="middle">{escape(x_label)}{" (log scale)" if log_x else ""}</text>'
        f'<text class="axis-label" x="14" y="{(TOP + HEIGHT - BOTTOM) / 2:.1f}" '
        f'text-anchor="middle" transform="rotate(-90 14 {(TOP + HEIGHT - BOTTOM) / 2:.1f})">'
        f"{escape(y_label)}</text>"
    )
    # the frontier, as a staircase from cheapest to dearest
    if len(front) > 1:
        steps: list[str] = []
        ordered = sorted(front, key=lambda i: (points[i].cost, points[i].score))
        for k, i in enumerate(ordered):
            px, py = _num(x(points[i].cost)), _num(y(points[i].score))
            if k:
                steps.append(f"{px},{_num(y(points[ordered[k - 1]].score))}")
            steps.append(f"{px},{py}")
        out.append(f'<polyline class="frontier" points="{" ".join(steps)}"/>')
    # points: dominated first, so frontier and reference markers are drawn on top
    order = sorted(range(len(points)), key=lambda i: (i in on_front, points[i].reference, i))
    for i in order:
        p = points[i]
        px, py = x(p.cost), y(p.score)
        if p.reference:
            kind = "reference"
        elif p.preliminary:
            kind = "preliminary"
        else:
            kind = "front" if i in on_front else "dominated"
        note = f" ({kind})" if kind in ("reference", "preliminary") else ""
        tip = (
            f"{p.label}{note}: {y_label} "
            f"{format_number(p.score)}, {x_label} {format_number(p.cost)}"
        )
        if p.reference:
            r = 5.5
            mark = (
                f'<path class="mark {kind}" d="M{_num(px)},{_num(py - r)} L{_num(px + r)},'
                f'{_num(py)} L{_num(px)},{_num(py + r)} L{_num(px - r)},{_num(py)} Z"/>'
            )
        else:
            mark = f'<circle class="mark {kind}" cx="{_num(px)}" cy="{_num(py)}" r="4.5"/>'
        label = ""
        if kind in ("front", "reference"):
            text = _short(p.label)
            # above its point, clear of the frontier's steps; a label that would run off the
            # right edge ends at its point instead of starting there
            left = px + 4 + LABEL_CHAR_PX * len(text) > WIDTH - 4
            lx, anchor = (px - 4, ' text-anchor="end"') if left else (px + 4, "")
            label = (
                f'<text class="point-label" x="{_num(lx)}" y="{_num(py - 9)}"{anchor} '
                f'dominant-baseline="middle">{escape(text)}</text>'
            )
        body = f"<title>{escape(tip)}</title>{mark}{label}"
        if p.href:
            out.append(f'<a href="{escape(p.href)}">{body}</a>')
        else:
            out.append(f"<g>{body}</g>")
    out.append("</svg>")
    return Markup("\n".join(out))


def _short(label: str, limit: int = 32) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"

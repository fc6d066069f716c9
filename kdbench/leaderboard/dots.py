"""Dot-and-whisker charts: one line per row, its mean, its 95% CI and each seed as a dot.

Written as SVG at build time like :mod:`.plots`: every text escaped, coordinates rounded
to one decimal, so the same rows always give the same bytes. A protocol page draws one per
table (every row); a method page draws one per table it appears in (its own rows, their
baselines and the reference rows), side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from kdbench.leaderboard.formatting import format_ci, format_number
from kdbench.leaderboard.plots import Scale, nice_ticks, tick_label

#: Chart geometry (SVG user units): label column, plot area, line height.
LABEL_WIDTH, PLOT_WIDTH, RIGHT = 200, 400, 16
LINE, TOP, BOTTOM = 18, 8, 42
#: The narrower geometry of the small charts shown side by side on a method page.
PANEL_LABEL_WIDTH, PANEL_PLOT_WIDTH = 140, 250
#: About how wide one character of a row label is (11 px text), to shorten long labels.
LABEL_CHAR_PX = 6.0


@dataclass(frozen=True)
class DotRow:
    """One line of a chart: a row's mean, its CI half-width and its per-seed values."""

    label: str
    mean: float | None
    ci95: float | None
    seeds: tuple[float, ...] = ()
    reference: bool = False
    highlight: bool = False
    href: str | None = None


def _num(value: float) -> str:
    return f"{value:.1f}"


def _short(label: str, room: float) -> str:
    """``label`` cut to fit ``room`` units (the tooltip always has the whole label)."""
    most = max(4, int(room / LABEL_CHAR_PX))
    return label if len(label) <= most else label[: most - 1] + "…"


def _extent(rows: Sequence[DotRow], context: Sequence[float]) -> tuple[float, float] | None:
    values = list(context)
    for row in rows:
        values.extend(row.seeds)
        if row.mean is not None:
            values.append(row.mean)
            if row.ci95 is not None:
                values += [row.mean - row.ci95, row.mean + row.ci95]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    low, high = min(values), max(values)
    span = high - low or abs(high) or 1.0
    return low - 0.05 * span, high + 0.05 * span


def _tip(row: DotRow, x_label: str) -> str:
    if row.mean is None:
        return f"{row.label}: no value"
    ci = format_ci(row.mean, row.ci95)
    seeds = ", ".join(format_number(v) for v in row.seeds)
    count = len(row.seeds)
    per_seed = f"; {count} seed{'s' if count != 1 else ''}: {seeds}" if row.seeds else ""
    kind = " (reference)" if row.reference else ""
    return f"{row.label}{kind}: {x_label} {format_number(row.mean)} {ci}".rstrip() + per_seed


def dot_whisker_svg(
    rows: Sequence[DotRow],
    *,
    title: str,
    x_label: str,
    higher_is_better: bool,
    context: Sequence[float] = (),
    label_width: int = LABEL_WIDTH,
    plot_width: int = PLOT_WIDTH,
) -> Markup | None:
    """The chart of ``rows`` in the given order; None when no row has a value.

    ``context`` widens the axis to values not drawn (a method page's chart keeps the scale
    of its whole table, so its panels read like the protocol page's).
    """
    extent = _extent(rows, context)
    if extent is None:
        return None
    width = label_width + plot_width + RIGHT
    height = TOP + LINE * len(rows) + BOTTOM
    x = Scale(extent[0], extent[1], label_width, label_width + plot_width)
    bottom = TOP + LINE * len(rows)
    better = "higher is better →" if higher_is_better else "← lower is better"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dots" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in nice_ticks(*extent):
        px = _num(x(tick))
        out.append(
            f'<line class="grid" x1="{px}" y1="{TOP}" x2="{px}" y2="{bottom}"/>'
            f'<text class="tick" x="{px}" y="{bottom + 14}" text-anchor="middle">'
            f"{escape(tick_label(tick))}</text>"
        )
    out.append(
        f'<text class="axis-label" x="{label_width + plot_width / 2:.1f}" y="{height - 8}" '
        f'text-anchor="middle">{escape(x_label)} · {better}</text>'
    )
    for i, row in enumerate(rows):
        y = TOP + LINE * i + LINE / 2
        kind = "reference" if row.reference else ("mine" if row.highlight else "row")
        parts = [
            f"<title>{escape(_tip(row, x_label))}</title>",
            f'<text class="row-label {kind}" x="{label_width - 8}" y="{_num(y)}" '
            f'text-anchor="end" dominant-baseline="middle">'
            f"{escape(_short(row.label, label_width - 12))}</text>",
            f'<line class="guide" x1="{label_width}" y1="{_num(y)}" '
            f'x2="{label_width + plot_width}" y2="{_num(y)}"/>',
        ]
        if row.mean is not None and row.ci95 is not None:
            lo, hi = _num(x(row.mean - row.ci95)), _num(x(row.mean + row.ci95))
            parts.append(
                f'<path class="whisker {kind}" d="M{lo},{_num(y)} H{hi} '
                f'M{lo},{_num(y - 4)} V{_num(y + 4)} M{hi},{_num(y - 4)} V{_num(y + 4)}"/>'
            )
        for value in row.seeds:
            cx = _num(x(value))
            parts.append(f'<circle class="seed {kind}" cx="{cx}" cy="{_num(y)}" r="2.5"/>')
        if row.mean is not None:
            px = x(row.mean)
            if row.reference:
                r = 5.0
                parts.append(
                    f'<path class="mean {kind}" d="M{_num(px)},{_num(y - r)} L{_num(px + r)},'
                    f'{_num(y)} L{_num(px)},{_num(y + r)} L{_num(px - r)},{_num(y)} Z"/>'
                )
            else:
                parts.append(f'<circle class="mean {kind}" cx="{_num(px)}" cy="{_num(y)}" r="4"/>')
        body = "".join(parts)
        if row.href:
            out.append(f'<a href="{escape(row.href)}">{body}</a>')
        else:
            out.append(f"<g>{body}</g>")
    out.append("</svg>")
    return Markup("\n".join(out))

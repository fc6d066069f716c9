"""The site's jinja2 environment and the markup helpers its templates call.

Autoescaping is always on (plugin names, descriptions and every other record text are
untrusted). One environment per process, so each template is compiled once however many
sites are built.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup, escape

from kdbench.leaderboard.acceptance import MIN_SEEDS
from kdbench.leaderboard.baselines import BASELINE_METHOD, is_baseline
from kdbench.leaderboard.devices import short_id
from kdbench.leaderboard.formatting import (
    ci_places,
    format_ci,
    format_number,
    signed_number,
    sort_key_text,
)
from kdbench.leaderboard.intake import REASONS
from kdbench.leaderboard.links import safe_url
from kdbench.leaderboard.notes import Notes
from kdbench.leaderboard.plots import tick_label
from kdbench.leaderboard.prose import render_prose
from kdbench.leaderboard.suites import suite_info

ABOUT_PATH = "about.html"
#: Legends of more metric columns than this start folded (a <details> the reader opens; a
#: printed page opens them).
FOLD_LEGEND_COLUMNS = 12


def pretty_json(data: Any) -> str:
    """``data`` as indented JSON with sorted keys, as run pages show configs.

    Indented JSON is encoded in pure Python; the compact form uses the C encoder. Run pages
    show the same few option sets thousands of times, so each is indented once.
    """
    return _indented(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str))


@functools.lru_cache(maxsize=4096)
def _indented(compact: str) -> str:
    return json.dumps(json.loads(compact), indent=2, sort_keys=True, ensure_ascii=False)


_DIRECTION = {
    True: Markup('<span class="dir" title="higher is better">↑</span>'),
    False: Markup('<span class="dir" title="lower is better">↓</span>'),
}


def direction(column: Any) -> Markup:
    """The arrow saying which way a metric is better (a table column or a record's metric);
    a function rather than a template macro, since run pages call it for every metric."""
    return _DIRECTION[bool(column.higher_is_better)]


HEADLINE_CLASS = ' class="headline"'


def metric_rows(metrics: Sequence[Any]) -> Markup:
    """The rows of a run page's metrics table, one ``<tr>`` per metric: written here rather
    than in the template, since every run page has one per metric and a template loop
    costs several times as much per row (the HTML is the same)."""
    rows = []
    for m in metrics:
        unit = f' <span class="unit">({escape(m.unit)})</span>' if m.unit else ""
        star = ' <span class="headline-mark" title="headline metric">★</span>' if m.headline else ""
        if m.value is None:
            value = f'<span title="{escape(m.reason)}">n/a</span>'
        else:
            value = escape(format_number(m.value))
        seeds = escape(", ".join(format_number(v) for v in m.per_seed)) if m.per_seed else ""
        rows.append(
            f"<tr{HEADLINE_CLASS if m.headline else ''}>\n"
            f"<td>{escape(m.name)}{unit} {direction(m)}{star}</td>\n"
            f'<td class="num">{value}</td>\n'
            f'<td class="num">{escape(format_ci(m.value, m.ci95))}</td>\n'
            f'<td class="num">{m.n if m.n is not None else ""}</td>\n'
            f"<td>{seeds}</td>\n"
            f"<td>{escape(m.reason or '')}</td>\n"
            "</tr>\n"
        )
    return Markup("".join(rows))


@functools.cache
def environment() -> jinja2.Environment:
    """The jinja2 environment: package templates, autoescape on, undefined names are errors.

    One per process, so each template is compiled once however many sites are built."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kdbench.leaderboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates are package files: no stat per page to see if they changed
    )
    env.filters["num"] = format_number
    env.filters["sortkey"] = sort_key_text
    env.filters["safe_url"] = safe_url
    env.filters["short_id"] = short_id
    env.filters["signed"] = signed_number
    env.globals["ci_places"] = ci_places
    env.filters["limit"] = tick_label
    env.filters["pretty_json"] = pretty_json
    env.filters["prose"] = render_prose
    env.globals["format_ci"] = format_ci
    env.globals["direction"] = direction
    env.globals["metric_rows"] = metric_rows
    env.globals["new_notes"] = Notes
    env.globals["suite_info"] = suite_info
    env.globals["about_page"] = ABOUT_PATH
    env.globals["min_seeds"] = MIN_SEEDS
    env.globals["fold_legend_columns"] = FOLD_LEGEND_COLUMNS
    env.globals["reasons"] = REASONS
    env.globals["baseline_method"] = BASELINE_METHOD
    env.globals["is_baseline"] = is_baseline
    return env


def static_files() -> Iterator[tuple[str, bytes]]:
    """The vendored CSS and JavaScript, as ``static/<name>``."""
    folder = resources.files("kdbench.leaderboard") / "static"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.is_file() and not item.name.startswith("."):
            yield f"static/{item.name}", item.read_bytes()

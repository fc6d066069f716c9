"""Dot-and-whisker charts: each row's mean, CI and seeds, drawn the same way every time;
one per table on protocol pages, and a method's tables side by side on its page."""

from __future__ import annotations

import re

from kdbench.leaderboard.dots import DotRow, dot_whisker_svg
from tests.leaderboard.conftest import PAYLOAD
from tests.leaderboard.pages import parse

ROWS = [
    DotRow("kd · s", 80.0, 2.0, (78.5, 80.0, 81.5), href="../methods/kd.html"),
    DotRow("teacher", 90.0, 0.5, (90.0,), reference=True),
    DotRow(PAYLOAD, 70.0, None, (69.0, 71.0), highlight=True),
    DotRow("no value", None, None),
]


def _chart(**kwargs):
    return dot_whisker_svg(
        ROWS, title="fewshot@1: acc_1shot", x_label="acc_1shot (%)", higher_is_better=True, **kwargs
    )


def test_a_chart_draws_each_row_with_its_interval_and_seeds():
    svg = str(_chart())
    assert svg == str(_chart())  # same rows, same bytes
    tree = parse(svg)
    groups = [e for e in tree.find_all("a") + tree.find_all("g")]
    assert len(groups) == len(ROWS)
    seeds = [c for c in tree.find_all("circle") if c.attrs["class"].startswith("seed")]
    assert len(seeds) == 3 + 1 + 2
    means = [
        e for e in tree.find_all("circle") + tree.find_all("path") if "mean" in e.attrs["class"]
    ]
    assert len(means) == 3  # the row without a value has none
    assert [e.attrs["class"] for e in means if e.tag == "path"] == ["mean reference"]
    whiskers = [p for p in tree.find_all("path") if p.attrs["class"].startswith("whisker")]
    assert len(whiskers) == 1 + 1  # no interval for the row whose CI is unknown
    assert "mean mine" in svg and "row-label mine" in svg
    assert "higher is better →" in svg
    assert re.search(
        r"kd · s: acc_1shot \(%\) 80\.00 ± 2\.00; 3 seeds: 78\.50, 80\.00, 81\.50", svg
    )


def test_the_axis_covers_every_seed_and_interval():
    tree = parse(str(_chart()))
    xs = [float(c.attrs["cx"]) for c in tree.find_all("circle")]
    assert min(xs) >= 200 and max(xs) <= 600  # inside the plot area
    wide = parse(str(_chart(context=[0.0, 100.0])))
    ticks = [t.all_text for t in wide.find_all("text") if t.attrs.get("class") == "tick"]
    assert ticks[0] == "0" and ticks[-1] == "100"


def test_text_is_escaped_and_long_labels_shortened():
    svg = str(_chart(label_width=100, plot_width=200))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    labels = [t.all_text for t in parse(svg).find_all("text") if "row-label" in t.attrs["class"]]
    assert all(len(label) <= 14 for label in labels) and labels[2].endswith("…")


def test_no_value_no_chart():
    assert (
        dot_whisker_svg([DotRow("a", None, None)], title="t", x_label="x", higher_is_better=True)
        is None
    )


def test_protocol_pages_chart_every_row_and_method_pages_chart_each_table(built):
    page = parse(built.out / "protocols" / "embedded" / "fewshot.html")
    table = next(t for t in built.tables if (t.suite, t.protocol) == ("embedded", "fewshot"))
    [chart] = [s for s in page.find_all("svg") if s.attrs.get("class") == "dots"]
    labels = [t.all_text for t in chart.find_all("text") if "row-label" in t.attrs["class"]]
    assert len(labels) == len(table.rows)

    method = next(r.method for r in table.rows if not r.reference)
    method_page = parse(built.out / "methods" / f"{method}.html")
    panels = [f for f in method_page.find_all("figure") if "panel" in f.attrs.get("class", "")]
    tables = [t for t in built.tables if any(r.method == method for r in t.rows)]
    assert len(panels) == len(tables) > 1
    for panel in panels:
        mine = [t for t in panel.find_all("text") if t.attrs.get("class") == "row-label mine"]
        assert mine, "the method's own rows stand out"

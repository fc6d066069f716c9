import random
import re

import pytest

from kdbench.leaderboard.pareto import pareto_front
from kdbench.leaderboard.plots import Point, log_ticks, nice_ticks, scatter_svg


def _brute_force(points, higher_is_better):
    def better_or_equal(a, b):
        return a >= b if higher_is_better else a <= b

    front = []
    for i, (ci, si) in enumerate(points):
        dominated = any(
            cj <= ci and better_or_equal(sj, si) and (cj < ci or sj != si)
            for j, (cj, sj) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_pareto_front_matches_brute_force(higher_is_better):
    rng = random.Random(3)
    for _ in range(200):
        points = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(rng.randint(0, 12))]
        assert pareto_front(points, higher_is_better=higher_is_better) == _brute_force(
            points, higher_is_better
        )


def test_pareto_front_direction():
    points = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0)]
    assert pareto_front(points, higher_is_better=True) == [0, 1]
    assert pareto_front(points, higher_is_better=False) == [0]


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.13, 0.92) == [0.2, 0.4, 0.6, 0.8]
    assert log_ticks(0.5, 40) == [0.5, 1, 2, 5, 10, 20]
    assert log_ticks(0.05, 5000) == [0.1, 1, 10, 100, 1000]


def test_svg_escapes_labels_and_marks_frontier_and_references():
    points = [
        Point(1.0, 50.0, "<b>cheap</b>", href="../methods/a.html?x=1&y=2"),
        Point(2.0, 40.0, "dominated"),
        Point(4.0, 70.0, "dear"),
        Point(8.0, 90.0, "teacher", reference=True),
    ]
    svg = str(
        scatter_svg(points, title="a & b", x_label="ms", y_label="acc", higher_is_better=True)
    )
    assert "<b>" not in svg and "&lt;b&gt;cheap&lt;/b&gt;" in svg
    assert 'href="../methods/a.html?x=1&amp;y=2"' in svg
    assert "<title>a &amp; b</title>" in svg
    assert svg.count('class="mark front"') == 2
    assert svg.count('class="mark dominated"') == 1
    assert svg.count('class="mark reference"') == 1
    assert len(re.findall(r"<polyline", svg)) == 1
    assert "log scale" not in svg


def test_wide_cost_ranges_use_a_log_axis():
    points = [Point(0.1, 1.0, "a"), Point(50.0, 2.0, "b")]
    svg = str(scatter_svg(points, title="t", x_label="ms", y_label="acc", higher_is_better=True))
    assert "ms (log scale)" in svg


def test_identical_svg_for_identical_points():
    points = [Point(1.0 + i, 10.0 * i, f"m{i}") for i in range(5)]

    def draw():
        return scatter_svg(points, title="t", x_label="x", y_label="y", higher_is_better=False)

    assert draw() == draw()


def test_a_plot_needs_points():
    with pytest.raises(ValueError, match="at least one point"):
        scatter_svg([], title="t", x_label="x", y_label="y", higher_is_better=True)


def test_ticks_end_when_the_step_is_below_the_values_precision():
    # 1e20 and the next float differ by 16384: a running sum of a 5000 step never moves
    ticks = nice_ticks(1e20, 1e20 + 32768)
    assert 1 <= len(ticks) <= 6


@pytest.mark.parametrize(
    "costs",
    [(1e100, 1.0), (1e-300, 1e100), (1e100, 1e100 * (1 + 1e-15)), (-1e100, 1e100), (0.0, 5e-324)],
)
def test_extreme_but_finite_costs_still_plot(costs):
    points = [Point(c, s, f"m{i}") for i, (c, s) in enumerate(zip(costs, (1e100, -1e100)))]
    svg = scatter_svg(points, title="t", x_label="x", y_label="y", higher_is_better=True)
    assert svg.count("<circle") == 2
    assert not re.search(r"\b(nan|inf)\b", svg)
    assert len(log_ticks(1e-100, 1e100)) <= 13

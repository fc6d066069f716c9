"""Accuracy-versus-cost fronts and the best row under a budget, from synthetic records."""

import math

import pytest

from kdbench.leaderboard.aggregate import build_tables
from kdbench.leaderboard.budgets import budget_levels, table_budgets
from kdbench.leaderboard.costs import FLOPS, LATENCY, PARAMS, device_costs
from kdbench.leaderboard.fronts import front_points, table_fronts
from kdbench.leaderboard.intake import RecordFile
from kdbench.results import Record
from tests.leaderboard.records import CPU, GPU, make_record, metric

#: Student -> (params M, GFLOPs, CPU latency ms, GPU latency ms).
COSTS = {
    "tiny": (0.5, 0.1, 1.2, 0.30),
    "small": (2.0, 0.6, 3.5, 0.25),  # faster than tiny on the GPU
    "base": (8.0, 3.0, 11.0, 0.9),
}
#: (method, student) -> acc.
SCORES = {
    ("kd", "tiny"): 50.0,
    ("kd", "small"): 58.0,
    ("kd", "base"): 57.0,  # dominated by kd · small everywhere
    ("supervised", "tiny"): 45.0,
    ("supervised", "small"): 52.0,
    ("supervised", "base"): 66.0,
    ("scratch", "tiny"): 70.0,  # a reference row: never on the front, never picked
}


def _files(*records):
    return [
        RecordFile(f"r{i:03d}.json", b"", Record.model_validate(r)) for i, r in enumerate(records)
    ]


def _device(student, fingerprint, latency, params, flops):
    metrics = [
        metric("latency_p50_ms", latency, higher_is_better=False, unit="ms", headline=True),
        metric("params_m", params, higher_is_better=False, unit="M"),
        metric("gflops", flops, higher_is_better=False, unit="GFLOPs"),
        metric("energy_mj_per_image", None, unit="mJ/image", reason="no energy counter"),
    ]
    return make_record(
        protocol="device",
        method="student",
        subject=student,
        reference=True,
        fingerprint=fingerprint,
        metrics=metrics,
    )


@pytest.fixture(scope="module")
def world():
    records = [
        make_record(
            method=method,
            subject=student,
            reference=method == "scratch",
            metrics=[metric("acc", acc, headline=True)],
        )
        for (method, student), acc in SCORES.items()
    ]
    for student, (params, flops, cpu, gpu) in COSTS.items():
        records.append(_device(student, CPU, cpu, params, flops))
        records.append(_device(student, GPU, gpu, params, flops))
    files = _files(*records)
    tables = build_tables(files, min_seeds=1)  # one seed per row: the policy is not tested here
    table = next(t for t in tables if t.protocol == "fewshot")
    costs = device_costs(files)
    devices = {costs.devices[d].split()[1]: d for d in costs.suite_devices("embedded")}
    return table, costs, devices


def _front(points):
    return sorted(p.row.label for p in points if p.on_front)


def test_every_row_is_a_point_at_its_students_cost(world):
    table, costs, _ = world
    points = front_points(table, costs, PARAMS, None)
    placed = {p.row.label: (p.cost, p.score) for p in points}
    assert placed == {
        f"{method} · {student}": (COSTS[student][0], acc)
        for (method, student), acc in SCORES.items()
    }


def test_the_front_holds_the_rows_no_ranked_row_beats_on_both(world):
    table, costs, devices = world
    by_params = ["kd · small", "kd · tiny", "supervised · base"]
    assert _front(front_points(table, costs, PARAMS, None)) == by_params
    assert _front(front_points(table, costs, FLOPS, None)) == by_params
    assert _front(front_points(table, costs, LATENCY, devices["CPU"])) == by_params
    # on the GPU the small student is faster than the tiny one: kd · tiny leaves the front
    assert _front(front_points(table, costs, LATENCY, devices["GPU"])) == [
        "kd · small",
        "supervised · base",
    ]


def test_fronts_are_drawn_per_axis_and_device_with_labelled_points(world):
    table, costs, devices = world
    fronts = table_fronts(table, costs, {"kd": "../methods/kd.html"})
    scopes = [(f.axis.metric, f.device) for f in fronts]
    assert scopes[:2] == [("params_m", None), ("gflops", None)]
    assert sorted(scopes[2:]) == sorted(
        (axis, d) for d in devices.values() for axis in ("latency_p50_ms", "energy_mj_per_image")
    )
    params = fronts[0]
    svg = str(params.svg)
    assert "kd · small</text>" in svg and "supervised · base</text>" in svg
    assert svg.count('class="mark front"') == 3 and svg.count('class="mark reference"') == 1
    assert [p.row.label for p in params.members] == ["kd · tiny", "kd · small", "supervised · base"]
    energy = [f for f in fronts if f.axis.metric == "energy_mj_per_image"]
    assert all(f.svg is None and "no energy counter" in f.note for f in energy)


def test_preliminary_rows_are_drawn_but_never_on_the_front(world):
    """Under a two-seed policy the one-seed rows are context, like reference rows: the
    front is drawn from the rows the policy ranks."""
    _, costs, _ = world
    records = [
        make_record(
            method=method,
            subject=student,
            seed=seed,
            reference=method == "scratch",
            metrics=[metric("acc", acc, headline=True)],
        )
        for (method, student), acc in SCORES.items()
        for seed in ((0, 1) if method == "kd" else (0,))
    ]
    for student, (params, flops, cpu, _gpu) in COSTS.items():
        records.append(_device(student, CPU, cpu, params, flops))
    files = _files(*records)
    table = next(t for t in build_tables(files, min_seeds=2) if t.protocol == "fewshot")
    points = front_points(table, costs, PARAMS, None)
    assert {p.row.label for p in points if p.row.preliminary} == {
        "supervised · tiny",
        "supervised · small",
        "supervised · base",
    }
    # supervised · base scores best of all but has one seed: the front is kd's alone
    assert _front(points) == ["kd · small", "kd · tiny"]
    svg = str(table_fronts(table, device_costs(files), {})[0].svg)
    assert svg.count('class="mark preliminary"') == 3
    assert "supervised · base (preliminary)" in svg
    assert "supervised · base</text>" not in svg  # unlabelled, like dominated points


# -- best under a budget ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "levels"),
    [
        ([0.5, 2.0, 8.0], [0.5, 1.0, 2.0, 5.0, 10.0]),
        ([1.2, 3.5, 11.0], [2.0, 5.0, 10.0, 20.0]),
        ([0.25, 0.3, 0.9], [0.5, 1.0]),
        ([4.0], [5.0]),
        ([5.0, 5.0], [5.0]),
        ([0.013, 870.0], [0.02, 0.1, 1.0, 10.0, 100.0, 1000.0]),
        ([], []),
        ([0.0, -1.0, math.inf], []),
    ],
)
def test_budget_levels_are_round_and_span_the_values(values, levels):
    assert budget_levels(values) == levels


def test_budget_levels_admit_the_cheapest_and_all_rows():
    for values in ([0.3, 0.30000000000000004], [1e-100, 1e100], [7.7, 19.99, 20.0001]):
        levels = budget_levels(values)
        assert 1 <= len(levels) <= 6 and levels == sorted(levels)
        assert levels[0] >= min(values) and levels[-1] >= max(values)
        assert levels[0] < 10 * min(values) and levels[-1] < 10 * max(values)


def test_the_budget_view_picks_the_best_ranked_row_within_each_budget(world):
    table, costs, devices = world
    views = {v.device: v for v in table_budgets(table, costs)}
    cpu = views[devices["CPU"]]
    assert cpu.latency_options == (None, 2.0, 5.0, 10.0, 20.0)
    assert cpu.params_options == (None, 0.5, 1.0, 2.0, 5.0, 10.0)

    def best(view, latency, params):
        pick = view.pick(latency, params)
        return None if pick is None else pick.row.label

    assert best(cpu, None, None) == "supervised · base"  # the reference row scores 70, unranked
    assert best(cpu, None, 5.0) == "kd · small"
    assert best(cpu, None, 1.0) == "kd · tiny"
    assert best(cpu, 2.0, None) == "kd · tiny"
    assert best(cpu, 10.0, None) == "kd · small"  # base takes 11 ms on the CPU
    assert best(cpu, 20.0, 2.0) == "kd · small"
    gpu = views[devices["GPU"]]
    assert gpu.latency_options == (None, 0.5, 1.0)
    assert best(gpu, 0.5, None) == "kd · small"
    assert best(gpu, 1.0, 0.5) == "kd · tiny"
    pick = gpu.pick(0.5, 2.0)
    assert (pick.score, pick.latency, pick.params) == (58.0, 0.25, 2.0)


def test_nothing_fits_below_the_cheapest_student_and_unknown_costs_never_fit():
    records = [
        make_record(method="kd", subject="tiny", metrics=[metric("acc", 50.0, headline=True)]),
        make_record(method="kd", subject="gone", metrics=[metric("acc", 90.0, headline=True)]),
        _device("tiny", CPU, 1.2, 0.5, 0.1),
    ]
    files = _files(*records)
    table = next(t for t in build_tables(files, min_seeds=1) if t.protocol == "fewshot")
    (view,) = table_budgets(table, device_costs(files))
    assert view.pick(None, None).row.label == "kd · gone"  # no limit: the best row
    assert view.pick(2.0, None).row.label == "kd · tiny"  # "gone" has no device record
    assert view.pick(None, 0.5).row.label == "kd · tiny"


def test_a_device_that_measured_none_of_the_tables_students_gets_no_budget_view():
    records = [
        make_record(method="kd", subject="tiny", metrics=[metric("acc", 50.0, headline=True)]),
        _device("tiny", CPU, 1.2, 0.5, 0.1),
        _device("other", GPU, 0.3, 9.0, 2.0),  # the suite's second device, not this student
    ]
    files = _files(*records)
    table = next(t for t in build_tables(files, min_seeds=1) if t.protocol == "fewshot")
    costs = device_costs(files)
    devices = {costs.devices[d].split()[1]: d for d in costs.suite_devices(table.suite)}
    assert set(devices) == {"CPU", "GPU"}
    (view,) = table_budgets(table, costs)
    assert view.device == devices["CPU"]
    # its figures still say, per axis, that nothing was measured on that device
    notes = [f.note for f in table_fronts(table, costs, {}) if f.device == devices["GPU"]]
    assert notes and all(n.startswith("No ") for n in notes)


def test_tables_without_device_records_get_no_fronts_or_budgets():
    files = _files(make_record(method="kd"))
    (table,) = build_tables(files)
    assert table_fronts(table, device_costs(files), {}) == []
    assert table_budgets(table, device_costs(files)) == []

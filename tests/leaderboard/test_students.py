"""(method, student) rows: never merged, joined to their own student's device records, and
compared with the baseline trained with the same student."""

import pytest

from kdbench.leaderboard.aggregate import build_tables
from kdbench.leaderboard.baselines import paired_delta
from kdbench.leaderboard.costs import LATENCY, PARAMS, device_costs
from kdbench.leaderboard.intake import RecordFile, screen
from kdbench.metrics.stats import mean_ci95
from kdbench.results import Record
from tests.leaderboard.records import CPU, make_record, metric, zoo_records


def _files(*records):
    return [
        RecordFile(f"r{i:03d}.json", b"", Record.model_validate(r)) for i, r in enumerate(records)
    ]


def _acc(value):
    return [metric("acc", value, headline=True)]


def _fewshot(tables):
    return next(t for t in tables if t.protocol == "fewshot")


def test_two_students_of_one_method_stay_two_rows():
    (table,) = build_tables(
        _files(
            make_record(method="kd", subject="shapes-vit-tiny", metrics=_acc(50.0)),
            make_record(method="kd", subject="shapes-vit-base", metrics=_acc(70.0)),
        ),
        min_seeds=1,
    )
    rows = [(r.method, r.student, r.cells["acc"].mean, r.rank) for r in table.rows]
    assert rows == [("kd", "shapes-vit-base", 70.0, 1), ("kd", "shapes-vit-tiny", 50.0, 2)]
    assert [r.label for r in table.rows] == ["kd · shapes-vit-base", "kd · shapes-vit-tiny"]


def test_the_same_seed_with_another_student_is_another_unit_not_a_duplicate():
    intake = screen(
        _files(
            make_record(method="kd", subject="shapes-vit-tiny", seed=0),
            make_record(method="kd", subject="shapes-vit-base", seed=0),
            make_record(protocol="device", method="student", subject="shapes-vit-tiny"),
            make_record(protocol="device", method="student", subject="shapes-vit-base"),
        ),
        {},
    )
    assert intake.unranked == [] and len(intake.ranked) == 4
    device = next(t for t in build_tables(intake.ranked) if t.protocol == "device")
    assert sorted(r.student for r in device.rows) == ["shapes-vit-base", "shapes-vit-tiny"]


def test_a_row_that_scores_the_teacher_has_no_student():
    record = make_record(method="teacher", subject="shapes-teacher", reference=True)
    assert record["components"]["student"]["name"] == "shapes-vit-tiny"  # the run's student
    (table,) = build_tables(_files(record))
    assert table.rows[0].student is None and table.rows[0].label == "teacher"


def test_a_record_without_a_student_component_has_no_student():
    (table,) = build_tables(_files(make_record(student=None)))
    assert table.rows[0].student is None


def test_each_row_joins_the_device_records_of_its_own_student():
    files = _files(*zoo_records(seeds=1, fingerprints=(CPU,)))
    tables = build_tables(files)
    costs = device_costs(files)
    (device,) = costs.suite_devices("embedded")
    kd = {r.student: r for r in _fewshot(tables).rows if r.method == "kd"}
    assert sorted(kd) == ["shapes-vit-base", "shapes-vit-small", "shapes-vit-tiny"]
    device_table = next(t for t in tables if t.protocol == "device")
    measured = {r.student: r for r in device_table.rows if r.student is not None}
    for student, row in kd.items():
        assert costs.cost("embedded", device, row, LATENCY) == measured[student].value(
            "latency_p50_ms"
        )
        assert costs.cost("embedded", None, row, PARAMS) == measured[student].value("params_m")
    latencies = {s: costs.cost("embedded", device, r, LATENCY) for s, r in kd.items()}
    assert len(set(latencies.values())) == 3  # three architectures, three costs
    with pytest.raises(ValueError, match="per device"):
        costs.cost("embedded", None, kd["shapes-vit-tiny"], LATENCY)


# -- the baseline with the same student ------------------------------------------------------


def test_the_difference_is_paired_over_the_shared_seeds():
    delta = paired_delta({0: 60.0, 1: 64.0, 2: 61.0, 3: 99.0}, {0: 55.0, 1: 58.0, 2: 57.5}, "b")
    mean, ci = mean_ci95([5.0, 6.0, 3.5])
    assert delta.seeds == (0, 1, 2)
    assert delta.mean == pytest.approx(mean) and delta.ci95 == pytest.approx(ci)
    # paired: the CI of the differences, much narrower than the rows' own spread suggests
    assert delta.ci95 < mean_ci95([60.0, 64.0, 61.0])[1]


@pytest.mark.parametrize("shared", [{}, {1: 50.0}])
def test_fewer_than_two_shared_seeds_give_no_difference(shared):
    delta = paired_delta({1: 60.0, 2: 61.0}, {**shared, 7: 1.0}, "supervised · x 0.1.0")
    assert delta.mean is None and delta.ci95 is None
    assert "a paired interval needs 2 or more" in delta.reason
    assert delta.reason.startswith("seed 1 shared" if shared else "no seed shared")


def test_each_row_is_compared_with_the_baseline_of_its_own_student():
    def rec(method, student, seed, value):
        return make_record(method=method, subject=student, seed=seed, metrics=_acc(value))

    tiny, base = "shapes-vit-tiny", "shapes-vit-base"
    (table,) = build_tables(
        _files(
            *(rec("supervised", tiny, s, v) for s, v in enumerate([40.0, 42.0, 41.0])),
            *(rec("supervised", base, s, v) for s, v in enumerate([60.0, 61.0, 65.0])),
            *(rec("kd", tiny, s, v) for s, v in enumerate([45.0, 46.0, 47.0])),
            *(rec("kd", base, s, v) for s, v in enumerate([62.0, 60.0])),
            rec("fitnets", "shapes-vit-small", 0, 50.0),  # no baseline with this student
            make_record(method="teacher", subject="shapes-teacher", metrics=_acc(80.0)),
        )
    )
    rows = {(r.method, r.student): r for r in table.rows}
    kd_tiny = rows[("kd", tiny)].deltas["acc"]
    assert kd_tiny.seeds == (0, 1, 2) and kd_tiny.baseline == f"supervised · {tiny} 0.1.0"
    expected = mean_ci95([5.0, 4.0, 6.0])
    assert (kd_tiny.mean, kd_tiny.ci95) == pytest.approx(expected)
    kd_base = rows[("kd", base)].deltas["acc"]
    assert kd_base.seeds == (0, 1)
    assert (kd_base.mean, kd_base.ci95) == pytest.approx(mean_ci95([2.0, -1.0]))
    assert rows[("supervised", tiny)].deltas == {}  # the baseline itself
    assert rows[("fitnets", "shapes-vit-small")].deltas == {}
    assert rows[("teacher", None)].deltas == {}


def test_of_two_baseline_versions_the_one_sharing_more_seeds_is_used():
    def rec(method, seed, value, version="0.1.0"):
        return make_record(method=method, seed=seed, method_version=version, metrics=_acc(value))

    (table,) = build_tables(
        _files(
            rec("supervised", 0, 10.0, "2.0"),
            rec("supervised", 0, 30.0, "1.0"),
            rec("supervised", 1, 30.0, "1.0"),
            rec("kd", 0, 40.0),
            rec("kd", 1, 40.0),
        )
    )
    kd = next(r for r in table.rows if r.method == "kd")
    assert kd.deltas["acc"].baseline.endswith(" 1.0") and kd.deltas["acc"].mean == 10.0

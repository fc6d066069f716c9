import pytest

from kdbench.leaderboard.aggregate import Row, build_tables, rank_rows
from kdbench.leaderboard.intake import RecordFile
from kdbench.metrics.stats import mean_ci95
from kdbench.results import Record
from tests.leaderboard.records import make_record, metric


def _files(*records):
    return [
        RecordFile(f"r{i:03d}.json", b"", Record.model_validate(r)) for i, r in enumerate(records)
    ]


def _score(value, ci95=0.5, name="score", **kw):
    return metric(name, value, headline=kw.pop("headline", True), ci95=ci95, **kw)


def test_mean_and_ci_over_seeds_match_mean_ci95():
    values = [61.0, 63.5, 60.25]
    (table,) = build_tables(
        _files(*(make_record(seed=s, metrics=[_score(v)]) for s, v in enumerate(values)))
    )
    (row,) = table.rows
    cell = row.cells["score"]
    mean, ci = mean_ci95(values)
    assert cell.mean == pytest.approx(mean, rel=1e-12)
    assert cell.ci95 == pytest.approx(ci, rel=1e-12)
    assert cell.count == 3 and len(row.runs) == 3


def test_one_seed_keeps_the_records_own_ci_apart_from_the_seeds_ci():
    """Before, a one-seed cell showed the record's CI (over episodes) in the column where
    other rows show the CI across seeds; the two kinds are now never in one column."""
    (table,) = build_tables(_files(make_record(metrics=[_score(70.0, ci95=1.25)])))
    cell = table.rows[0].cells["score"]
    assert (cell.mean, cell.ci95, cell.count, cell.record_ci95) == (70.0, None, 1, 1.25)


def test_rows_below_the_seed_minimum_are_preliminary_and_never_above_ranked_rows():
    """The row with one seed scores highest, yet it is listed after the three-seed rows and
    gets no rank (before, it ranked first)."""
    records = [make_record(method="lucky", metrics=[_score(99.0)])]
    for seed in range(3):
        records.append(make_record(method="solid", seed=seed, metrics=[_score(70.0 + seed)]))
        records.append(make_record(method="weak", seed=seed, metrics=[_score(50.0 + seed)]))
    (table,) = build_tables(_files(*records))
    assert [(r.method, r.rank, r.preliminary) for r in table.rows] == [
        ("solid", 1, False),
        ("weak", 2, False),
        ("lucky", None, True),
    ]
    (lenient,) = build_tables(_files(*records), min_seeds=1)
    assert [(r.method, r.rank) for r in lenient.rows] == [("lucky", 1), ("solid", 2), ("weak", 3)]


def test_a_null_metric_stays_null_with_its_reason():
    null = _score(None, reason="no energy counter", name="energy", headline=False)
    (table,) = build_tables(
        _files(
            make_record(seed=0, metrics=[_score(1.0), null]),
            make_record(seed=1, metrics=[_score(2.0), null]),
        )
    )
    cell = table.rows[0].cells["energy"]
    assert cell.mean is None and cell.ci95 is None and cell.reason == "no energy counter"


def test_the_first_headline_metric_sorts_and_references_get_no_rank():
    def rec(method, one, five, reference=False):
        return make_record(
            method=method,
            reference=reference,
            metrics=[_score(one, name="acc_1shot"), _score(five, name="acc_5shot")],
        )

    (table,) = build_tables(
        _files(
            rec("low", 40, 90),
            rec("teacher", 80, 95, reference=True),
            rec("high", 60, 70),
            rec("tie", 60, 50),
        ),
        min_seeds=1,
    )
    assert table.sort_metric == "acc_1shot"
    assert [(r.method, r.rank) for r in table.rows] == [
        ("teacher", None),
        ("high", 1),
        ("tie", 1),
        ("low", 3),
    ]
    assert [c.name for c in table.columns] == ["acc_1shot", "acc_5shot"]


def test_lower_is_better_sorts_ascending_and_missing_values_go_last():
    def rec(method, value):
        reason = None if value is not None else "no GPU"
        return make_record(
            protocol="device",
            method=method,
            metrics=[_score(value, name="latency", higher_is_better=False, reason=reason)],
        )

    (table,) = build_tables(
        _files(rec("slow", 9.0), rec("none", None), rec("fast", 1.0)), min_seeds=1
    )
    assert [(r.method, r.rank) for r in table.rows] == [("fast", 1), ("slow", 2), ("none", None)]


def test_headline_columns_come_first():
    (table,) = build_tables(
        _files(make_record(metrics=[_score(1.0, name="aux", headline=False), _score(2.0)]))
    )
    assert [c.name for c in table.columns] == ["score", "aux"]
    assert table.sort_metric == "score"


def test_suites_versions_and_devices_get_separate_tables():
    tables = build_tables(
        _files(
            make_record(suite="embedded", version=1),
            make_record(suite="standard", version=1),
            make_record(suite="embedded", version=2),
            make_record(protocol="device", fingerprint={"id": "cpu"}),
            make_record(protocol="device", fingerprint={"id": "gpu"}),
        )
    )
    keys = [(t.suite, t.key, t.device) for t in tables]
    assert keys == [
        ("embedded", "device@1", "cpu"),
        ("embedded", "device@1", "gpu"),
        ("embedded", "fewshot@1", ""),
        ("embedded", "fewshot@2", ""),
        ("standard", "fewshot@1", ""),
    ]


def test_method_versions_are_separate_rows():
    (table,) = build_tables(
        _files(make_record(method_version="1.0"), make_record(method_version="2.0"))
    )
    assert sorted(r.method_version for r in table.rows) == ["1.0", "2.0"]


def test_rank_rows_without_a_sort_metric_orders_by_name():
    rows = [Row("b", "1", False, {}, [], None), Row("a", "1", False, {}, [], None)]
    assert [r.method for r in rank_rows(rows, None, True)] == ["a", "b"]
    assert all(r.rank is None for r in rows)


def test_mixed_configurations_are_listed():
    (table,) = build_tables(
        _files(make_record(config={"episodes": 1}), make_record(seed=1, config={"episodes": 2}))
    )
    assert len(table.config_hashes) == 2

"""Quantised records on the site: their own tables, a precision filter, and points at the
quantised student's cost, marked, on the fronts."""

import json

from kdbench.leaderboard.aggregate import build_tables
from kdbench.leaderboard.build import build_site
from kdbench.leaderboard.costs import LATENCY, PARAMS, device_costs
from kdbench.leaderboard.fronts import table_fronts
from kdbench.leaderboard.intake import RecordFile, table_key
from kdbench.leaderboard.precisions import record_precision
from kdbench.results import Record
from tests.leaderboard.records import make_record, metric

INT8 = {"episodes": 100, "precision": {"name": "int8", "calibration_images": 256}}


def _score(precision_config, acc, run_id):
    return make_record(
        method="kd",
        subject="tiny",
        config=precision_config,
        run_id=run_id,
        metrics=[metric("acc", acc, headline=True)],
    )


def _device(precision_config, run_id, latency, quant_latency=None, reason=None):
    metrics = [
        metric("latency_p50_ms", latency, higher_is_better=False, unit="ms", headline=True),
        metric("params_m", 2.0, higher_is_better=False, unit="M"),
    ]
    if precision_config:
        metrics.append(
            metric(
                "quant_latency_p50_ms",
                quant_latency,
                higher_is_better=False,
                unit="ms",
                reason=reason,
            )
        )
    return make_record(
        protocol="device",
        method="student",
        subject="tiny",
        reference=True,
        config=precision_config,
        run_id=run_id,
        metrics=metrics,
    )


def _records():
    return [
        _score(None, 60.0, "a" * 32),
        _score(INT8, 59.0, "b" * 32),
        _device(None, "c" * 32, 10.0),
        _device(INT8, "d" * 32, 10.5, quant_latency=4.0),
    ]


def _files(records):
    return [RecordFile(f"r{i}.json", b"", Record.model_validate(r)) for i, r in enumerate(records)]


def test_a_precision_is_part_of_the_table_key():
    fp32, int8 = (Record.model_validate(r) for r in _records()[:2])
    assert (record_precision(fp32), record_precision(int8)) == ("fp32", "int8")
    assert table_key(fp32)[:-1] == table_key(int8)[:-1] != table_key(int8)
    tables = [t for t in build_tables(_files(_records()), min_seeds=1) if t.protocol == "fewshot"]
    assert [(t.precision, t.rows[0].value("acc")) for t in tables] == [
        ("fp32", 60.0),
        ("int8", 59.0),
    ]
    assert tables[1].quantised and tables[1].precision_label == "int8 (PTQ)"


def test_a_quantised_row_costs_what_its_quantised_student_costs():
    files = _files(_records())
    costs = device_costs(files)
    table = next(
        t for t in build_tables(files, min_seeds=1) if t.protocol == "fewshot" and t.quantised
    )
    row = table.rows[0]
    (device,) = costs.suite_devices("embedded")
    assert costs.cost("embedded", device, row, LATENCY, "int8") == 4.0
    assert costs.cost("embedded", device, row, LATENCY) == 10.0  # fp32 as before
    assert costs.cost("embedded", None, row, PARAMS, "int8") == 2.0
    # a simulated precision has no latency, and says why
    sim = {"episodes": 100, "precision": {"name": "int4-sim"}}
    files = _files([_device(sim, "e" * 32, 10.0, reason="int4-sim is simulated")])
    sim_costs = device_costs(files)
    assert sim_costs.cost("embedded", device, row, LATENCY, "int4-sim") is None
    assert sim_costs.missing_reasons("embedded", device, LATENCY, "int4-sim") == [
        "int4-sim is simulated"
    ]
    latency = next(
        f for f in table_fronts(table, costs, {}) if f.axis == LATENCY and f.device == device
    )
    assert "at int8 (PTQ)" in latency.title
    assert [p.cost for p in latency.points] == [4.0]
    assert "[int8]" in str(latency.svg)


def test_the_site_shows_the_precision_and_filters_by_it(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    for i, record in enumerate(_records()):
        (folder / f"r{i}.json").write_text(json.dumps(record))
    build_site(folder, tmp_path / "site", protocol_versions={"fewshot": 1, "device": 1})
    page = next((tmp_path / "site").rglob("fewshot.html")).read_text()
    if "precision-filter" not in page:  # the fronts page shares the name: take the protocol's
        page = next(
            p.read_text()
            for p in (tmp_path / "site").rglob("fewshot.html")
            if "precision-filter" in p.read_text()
        )
    assert '<option value="int8">int8</option>' in page
    assert 'data-precision="int8"' in page and 'data-precision="fp32"' in page
    assert "int8 (PTQ)" in page
    csv = (tmp_path / "site/data/leaderboard.csv").read_text().splitlines()
    assert csv[0].split(",")[6] == "precision"
    assert any(",int8," in line for line in csv[1:])

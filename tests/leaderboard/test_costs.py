from kdbench.leaderboard.aggregate import build_tables
from kdbench.leaderboard.costs import device_costs
from kdbench.leaderboard.fronts import table_fronts
from kdbench.leaderboard.intake import RecordFile
from kdbench.results import Record
from tests.leaderboard.records import CPU, GPU, make_record


def _files(*records):
    return [
        RecordFile(f"r{i:03d}.json", b"", Record.model_validate(r)) for i, r in enumerate(records)
    ]


def _score_table(files):
    return next(t for t in build_tables(files) if t.protocol == "fewshot")


def test_latency_and_energy_are_plotted_per_device_and_parameters_and_flops_once():
    files = _files(
        make_record(method="a", subject="shapes-vit-tiny"),
        make_record(method="b", subject="shapes-vit-base"),
        make_record(protocol="device", method="a", subject="shapes-vit-tiny", fingerprint=CPU),
        make_record(protocol="device", method="b", subject="shapes-vit-base", fingerprint=CPU),
        make_record(protocol="device", method="a", subject="shapes-vit-tiny", fingerprint=GPU),
    )
    plots = table_fronts(_score_table(files), device_costs(files), {})
    titles = [p.title for p in plots]
    assert sum("latency" in t for t in titles) == 2
    assert sum("energy" in t for t in titles) == 2
    assert sum("parameters" in t for t in titles) == 1
    assert sum("FLOPs" in t for t in titles) == 1
    cpu_energy = next(p for p in plots if "energy" in p.title and "CPU" in p.title)
    assert cpu_energy.svg is None and "no energy counter on this CPU" in cpu_energy.note
    cpu_latency = next(p for p in plots if "latency" in p.title and "CPU" in p.title)
    assert str(cpu_latency.svg).count('class="mark ') == 2  # both backbones measured
    gpu_latency = next(p for p in plots if "latency" in p.title and "GPU" in p.title)
    assert str(gpu_latency.svg).count('class="mark ') == 1  # only the tiny one


def test_a_backbone_joins_only_at_the_same_version():
    device = make_record(protocol="device", method="a", subject="shapes-vit-tiny")
    device["components"]["subject"]["version"] = "9.9"
    files = _files(make_record(method="a", subject="shapes-vit-tiny"), device)
    assert table_fronts(_score_table(files), device_costs(files), {}) == []


def test_device_tables_get_no_cost_plots():
    files = _files(make_record(protocol="device", method="a"))
    (table,) = build_tables(files)
    assert table_fronts(table, device_costs(files), {}) == []

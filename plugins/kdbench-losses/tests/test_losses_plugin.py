"""The plugin as installed: its entry point registers every loss and method, and each
method runs the distill protocol end to end (smoke sizes, random Shapes backbones)."""

import pytest
from kdbench_losses import LOSSES, METHODS

from kdbench import plugins, runner
from kdbench.record_files import load_record
from kdbench.testing import TINY_DISTILL, isolated_kdbench


@pytest.fixture(autouse=True)
def _isolated(tmp_path):
    with isolated_kdbench(tmp_path / "cache"):
        yield


def test_the_entry_point_registers_every_loss_and_method():
    registry = plugins.get_registry()
    for name, *_ in LOSSES:
        component = registry.get("losses", name)
        assert (component.distribution, component.version) == ("kdbench-losses", "0.1.0")
        assert component.url.startswith("https://arxiv.org/")
    for method in METHODS:
        component = registry.get("methods", method.name)
        assert component.distribution == "kdbench-losses"
        assert component.load().recipe is not None


def test_every_method_runs_the_distill_protocol(tmp_path):
    registry = plugins.get_registry()
    names = [m.name for m in METHODS]
    units, unsupported = runner.plan(
        registry, protocols=["distill"], methods=names, smoke=True, overrides=TINY_DISTILL
    )
    assert not unsupported and len(units) == len(names)
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    paths = {o.unit.method.name: o.path for o in report.outcomes}  # where each record went
    for name in names:
        record = load_record(paths[name])
        assert record.method.distribution == "kdbench-losses"
        assert record.metric("student_top1").value is not None
        loss = record.components[f"loss:{name}"]
        assert loss.distribution == "kdbench-losses" and loss.version == "0.1.0"

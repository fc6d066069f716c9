"""The student is part of a submission: a method declares one, ``--student`` overrides it,
and units, record files and the device rows keep (method, student) pairs apart."""

import dataclasses

import pytest

from kdbench import plugins, runner
from kdbench.cli import app
from kdbench.errors import UnknownComponentError
from kdbench.hookspecs import hookimpl
from kdbench.methods import KD, STUDENT
from kdbench.record_files import load_record
from kdbench.world.models import build_vit
from tests.conftest import ZOO


def narrow_student(**options):
    """A student of another architecture: the Shapes teacher's shape, random weights."""
    options.pop("pretrained", None)
    return build_vit("teacher", **options)


def _shapes_vit_only(protocol, student=None):
    if student is not None and not student.startswith("shapes-"):
        return f"needs a Shapes ViT student, not {student!r}"
    return None


class StudentPlugin:
    @hookimpl
    def kdbench_register_students(self, register):
        register(narrow_student, name="wide-test", description="A wider ViT (test).")

    @hookimpl
    def kdbench_register_methods(self, register):
        register(dataclasses.replace(KD, name="kd-wide", student="wide-test"))
        register(dataclasses.replace(KD, name="kd-vit-only", supports=_shapes_vit_only))


def _plan(registry, **kwargs):
    return runner.plan(registry, smoke=True, **kwargs)


def test_students_multiply_the_run_and_keep_their_own_record_files(tmp_path):
    with plugins.temporary_plugin(StudentPlugin(), distribution="student-tests") as registry:
        units, _ = _plan(
            registry,
            protocols=["fewshot"],
            methods=["kd", "teacher"],
            students=["wide-test", "shapes-student"],
        )
    rows = sorted(u.row for u in units)
    # the teacher row has no student to vary; the default student keeps today's file name
    assert rows == ["kd", "kd@wide-test", "teacher"]
    by_row = {u.row: u for u in units}
    assert by_row["kd@wide-test"].config["base"]["student"] == {"name": "wide-test", "options": {}}
    assert by_row["kd"].config["base"]["student"]["name"] == "shapes-student"
    assert by_row["kd@wide-test"].record_path(tmp_path).name == "kd@wide-test-seed0.smoke.json"
    assert by_row["kd"].record_path(tmp_path).name == "kd-seed0.smoke.json"
    assert by_row["kd@wide-test"].label == "fewshot/kd@wide-test/seed0"


def test_a_method_declares_its_student_and_device_measures_every_student_in_use():
    with plugins.temporary_plugin(StudentPlugin(), distribution="student-tests") as registry:
        units, _ = _plan(registry, protocols=["fewshot", "device"], methods=["kd-wide", "student"])
        rows = {(u.protocol.name, u.row) for u in units}
        assert ("fewshot", "kd-wide@wide-test") in rows
        assert {r for p, r in rows if p == "device"} == {"student@wide-test"}
        # with --student, the declared one is overridden
        units, _ = _plan(
            registry, protocols=["distill"], methods=["kd-wide"], students=["shapes-student"]
        )
        assert [u.row for u in units] == ["kd-wide"]
        assert units[0].config["student"]["name"] == "shapes-student"


def test_an_unknown_student_is_refused_with_a_suggestion_before_any_work():
    with pytest.raises(UnknownComponentError, match=r"shapes-studnet.*shapes-student"):
        _plan(
            plugins.get_registry(),
            protocols=["fewshot"],
            methods=["kd"],
            students=["shapes-studnet"],
        )


def test_a_method_refuses_a_student_it_cannot_train_with_its_reason():
    with plugins.temporary_plugin(StudentPlugin(), distribution="student-tests") as registry:
        units, unsupported = _plan(
            registry,
            protocols=["fewshot"],
            methods=["kd-vit-only"],
            students=["shapes-student", "wide-test"],
        )
    assert [u.row for u in units] == ["kd-vit-only"]
    assert unsupported == [
        ("fewshot", "kd-vit-only@wide-test", "needs a Shapes ViT student, not 'wide-test'")
    ]


def test_a_unit_trains_the_student_it_names_and_records_it(world_weights, tmp_path):
    with plugins.temporary_plugin(StudentPlugin(), distribution="student-tests") as registry:
        units, _ = _plan(
            registry, protocols=["fewshot"], methods=["supervised"], students=["wide-test"]
        )
        report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(tmp_path / "embedded/fewshot/supervised@wide-test-seed0.smoke.json")
    ref = record.components["student"]
    assert (ref.name, ref.distribution) == ("wide-test", "student-tests")
    assert record.components["subject"].name == "wide-test"
    assert runner.summary_rows(report)[0]["method"] == "supervised@wide-test"


def test_the_run_command_takes_repeatable_students(world_weights, tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app,
        ["run", "--smoke", "-p", "device", "-m", "student", "--student", "shapes-student",
         "--student", "shapes-teacher-typo", "-o", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "shapes-teacher-typo" in result.output
    assert not any(tmp_path.rglob("*.json"))  # refused before any work


def test_the_student_reference_row_is_a_student_subject():
    assert STUDENT.reference and STUDENT.student is None


# -- the zoo through every protocol ---------------------------------------------------------


@pytest.mark.parametrize("student", ZOO)
def test_every_zoo_student_runs_every_protocol(world_weights, tmp_path, student):
    """At smoke scale: distill (from the student's pretrained weights), the base stage of
    fewshot and segmentation and oneclass's text-space stage (from random weights), and
    device; plus the student as shipped, measured by device."""
    registry = plugins.get_registry()
    units, _ = runner.plan(registry, methods=["kd", "student"], students=[student], smoke=True)
    assert {(u.protocol.name, u.row) for u in units} >= {
        (p, f"kd@{student}") for p in ("distill", "fewshot", "oneclass", "segmentation")
    } | {("device", f"student@{student}")}
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [(o.unit.label, o.message) for o in report.failed]
    for protocol in ("distill", "fewshot", "oneclass", "segmentation"):
        record = load_record(tmp_path / f"embedded/{protocol}/kd@{student}-seed0.smoke.json")
        assert record.components["student"].name == student
        head = next(m for m in record.metrics if m.headline)
        assert head.value is not None, (protocol, head)
    [outcome] = [o for o in report.outcomes if o.unit.protocol.name == "device"]
    device = load_record(outcome.path)
    assert outcome.path.parent.name == device.device_fingerprint["id"]
    assert device.components["subject"].name == student


def test_pretrain_students_adds_to_the_manifest_and_refuses_the_world_models(tmp_path):
    from kdbench.errors import ConfigError
    from kdbench.world.models import find_weights
    from kdbench.world.pretrain import PretrainConfig, pretrain_students

    registry = plugins.get_registry()
    config = PretrainConfig.smoke()
    manifest = pretrain_students(["shapes-vit-xs"], registry, tmp_path, config, log=print)
    manifest = pretrain_students(["shapes-thriftynet"], registry, tmp_path, config, log=print)
    assert set(manifest["models"]) == {"shapes-vit-xs", "shapes-thriftynet"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDBENCH_WORLD_WEIGHTS", str(tmp_path))
        assert find_weights("shapes-vit-xs") == tmp_path / "shapes-vit-xs.safetensors"
        backbone = registry.get("students", "shapes-vit-xs").load()()  # loads, sha256 checked
        assert backbone.name == "shapes-vit-xs"
    with pytest.raises(ConfigError, match="world's own models"):
        pretrain_students(["shapes-student"], registry, tmp_path, config)
    with pytest.raises(UnknownComponentError):
        pretrain_students(["shapes-vit-xxs"], registry, tmp_path, config)

"""The distill protocol end to end at smoke scale, and its bad-input errors."""

import pytest

from kdbench import plugins, runner
from kdbench.hookspecs import hookimpl
from kdbench.methods import CE, LossTerm, Method, Recipe
from kdbench.models.backbone import WeightsError
from kdbench.record_files import load_record
from kdbench.registry import UnknownComponentError
from kdbench.unit_place import PlanError


def _run(tmp_path, methods, overrides=None, registry=None):
    registry = registry or plugins.get_registry()
    units, _ = runner.plan(
        registry, protocols=["distill"], methods=methods, smoke=True, overrides=overrides
    )
    return runner.run_units(units, registry=registry, out=tmp_path, progress=False)


def test_recipes_run_end_to_end_and_write_valid_records(world_weights, tmp_path):
    report = _run(tmp_path, ["supervised", "kd", "fitnets"])
    assert not report.failed, [o.message for o in report.failed]
    kd = load_record(tmp_path / "embedded/distill/kd-seed0.smoke.json")
    names = {m.name: m for m in kd.metrics}
    assert set(names) == {"student_top1", "teacher_top1", "cka", "cka_drop", "train_seconds"}
    assert 0 <= names["student_top1"].value <= 100 and names["student_top1"].ci95 is not None
    assert names["teacher_top1"].value is not None
    assert 0 <= names["cka"].value <= 1
    assert kd.components["loss:kd"].options == {"weight": 1.0, "temperature": 4.0}
    assert kd.components["subject"].name == "shapes-student"
    assert any("computed once" in note for note in kd.notes)
    assert kd.dataset.name == "shapes" and kd.dataset.version == "1"
    supervised = load_record(tmp_path / "embedded/distill/supervised-seed0.smoke.json")
    assert supervised.metric("teacher_top1").value is None
    assert "no teacher" in supervised.metric("teacher_top1").reason
    # fitnets reuses the teacher kd adapted (same mode, data and seed)
    fitnets = load_record(tmp_path / "embedded/distill/fitnets-seed0.smoke.json")
    assert any("reused from the cache" in note for note in fitnets.notes)
    assert fitnets.metric("teacher_top1").value == kd.metric("teacher_top1").value


class KdTwin:
    @hookimpl
    def kdbench_register_methods(self, register):
        from kdbench.methods import KD

        register(Method("kd-twin", "kd's recipe under another name", recipe=KD.recipe))


def test_methods_that_read_the_same_teacher_outputs_share_one_pass(
    world_weights, tmp_path, monkeypatch
):
    """kd and a method with kd's recipe read the teacher's logits on the same images: the
    second unit loads them from the cache, and trains exactly the student the first did."""
    from kdbench import student_stage

    passes = []
    real = student_stage.teacher_tensors

    def counting(source, images, needs, **kwargs):
        passes.append(sorted(needs.teacher))
        return real(source, images, needs, **kwargs)

    monkeypatch.setattr(student_stage, "teacher_tensors", counting)
    with plugins.temporary_plugin(KdTwin(), distribution="tests") as registry:
        report = _run(tmp_path, ["kd", "kd-twin"], registry=registry)
    assert not report.failed, [o.message for o in report.failed]
    assert passes == [["logits", "pooled"]]  # one pass, for both outputs, for both units
    kd = load_record(tmp_path / "embedded/distill/kd-seed0.smoke.json")
    twin = load_record(tmp_path / "embedded/distill/kd-twin-seed0.smoke.json")
    for name in ("student_top1", "cka"):
        assert twin.metric(name).value == kd.metric(name).value
    assert twin.statistics["student_confusion"] == kd.statistics["student_confusion"]


class Exploding:
    @hookimpl
    def kdbench_register_methods(self, register):
        register(
            Method(
                "exploding",
                "a learning rate no loss survives",
                recipe=Recipe(losses=(CE, LossTerm("kd", 1e30))),
            )
        )


def test_a_nan_loss_stops_the_unit_and_keeps_earlier_records(world_weights, tmp_path):
    _run(tmp_path, ["supervised"])
    before = (tmp_path / "embedded/distill/supervised-seed0.smoke.json").read_bytes()
    with plugins.temporary_plugin(Exploding(), distribution="tests") as registry:
        report = _run(
            tmp_path, ["exploding"], overrides={"distill.lr.student": 1e30}, registry=registry
        )
    [failed] = report.failed
    assert "loss became" in failed.message and "step" in failed.message
    assert (tmp_path / "embedded/distill/exploding-seed0.smoke.failed.json").exists()
    assert (tmp_path / "embedded/distill/supervised-seed0.smoke.json").read_bytes() == before


def test_unknown_names_say_what_exists(world_weights, tmp_path):
    with pytest.raises(UnknownComponentError, match="Did you mean 'kd'"):
        _run(tmp_path, ["kdd"])
    report = _run(tmp_path, ["supervised"], overrides={"distill.teacher.name": "shapes-teachr"})
    assert "Did you mean 'shapes-teacher'" in report.failed[0].message


def test_a_missing_weights_file_names_the_path(world_weights, tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(PlanError, match=f"distill.student.options.weights: .*{missing}"):
        _run(  # before any unit starts
            tmp_path,
            ["supervised"],
            overrides={"distill.student.options": {"weights": str(missing)}},
        )
    assert not list(tmp_path.rglob("*.json"))
    from kdbench.world.models import world_backbone

    with pytest.raises(WeightsError, match="does not exist"):
        world_backbone("student", weights=missing)


def test_teacher_rate_is_the_modes_else_by_whether_the_backbone_trains():
    from kdbench.teacher_stage import teacher_lr

    rates = {"lp": 1e-3, "ft": 3e-4, "lora": 5e-4, "student": 1e-4}
    assert teacher_lr(rates, "lora", frozen=False) == 5e-4
    assert teacher_lr(rates, "svf", frozen=False) == 3e-4  # a plugin's mode, no rate of its own
    assert teacher_lr(rates, "probe", frozen=True) == 1e-3

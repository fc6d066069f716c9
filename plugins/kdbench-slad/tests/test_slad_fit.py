"""SLAD's joint step, and the methods end to end on the distill protocol (smoke sizes,
random Shapes backbones so no pretrained weights are needed)."""

import pytest
import torch
import torch.nn.functional as F
from kdbench_slad import slad_method
from kdbench_slad.joint import JointStep

from kdbench import plugins, runner
from kdbench.distillation import Classifier
from kdbench.losses import kd_kl
from kdbench.models.adapters import LoRA
from kdbench.record_files import load_record
from kdbench.testing import TINY_DISTILL, isolated_kdbench
from kdbench.world.models import build_vit


@pytest.fixture(autouse=True)
def _isolated(tmp_path):
    with isolated_kdbench(tmp_path / "cache"):
        yield


def test_the_joint_loss_is_ce_plus_ce_plus_kd_and_updates_both_models():
    torch.manual_seed(0)
    teacher_bb, student_bb = build_vit("teacher"), build_vit("student")
    LoRA(r=4, alpha=4, dropout=0.0).apply(teacher_bb)
    from kdbench_slad.sharing import share_lora

    student_bb.requires_grad_(False)
    share_lora(teacher_bb, student_bb)
    teacher, student = Classifier(teacher_bb, 3), Classifier(student_bb, 3)
    step = JointStep(teacher, student, temperature=2.0)
    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 2, -1, 1])
    loss = step(images, labels)
    t, s = teacher(images), student(images)
    keep = labels >= 0
    direct = (
        F.cross_entropy(s[keep], labels[keep])
        + F.cross_entropy(t[keep], labels[keep])
        + kd_kl(s, t, 2.0)
    )
    assert torch.isclose(loss, direct, atol=1e-5)
    # B starts at zero, so the first gradients reach the adapters through B
    loss.backward()
    assert teacher.head.fc.weight.grad.abs().sum() > 0
    assert student.head.fc.weight.grad.abs().sum() > 0
    assert teacher_bb.model.blocks[1].attn.qkv.lora_b.grad.abs().sum() > 0  # unshared
    assert teacher_bb.model.blocks[5].attn.qkv.lora_b.grad.abs().sum() > 0  # shared
    trained = [n for n, p in step.named_parameters() if p.requires_grad]
    assert all("lora_" in n or ".head." in n for n in trained)


def test_slad_and_a_two_stage_baseline_run_the_distill_protocol(tmp_path):
    registry = plugins.get_registry()
    names = ["slad", "kd-ft"]
    units, unsupported = runner.plan(
        registry, protocols=["distill"], methods=names, smoke=True, overrides=TINY_DISTILL
    )
    assert not unsupported
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    paths = {o.unit.method.name: o.path for o in report.outcomes}  # where each record went
    slad = load_record(paths["slad"])
    assert slad.method.distribution == "kdbench-slad"
    assert slad.metric("teacher_top1").value is not None
    assert slad.metric("train_seconds").value > 0
    sharing = slad.components["student_adapter"].options
    assert sharing["pairs"] == [[0, 0], [1, 2], [2, 3], [3, 5]] and sharing["mapping"] == "even"
    assert sharing["steps"] == slad.protocol.config["student_epochs"] * 2  # 20 images, batch 16
    assert slad.components["teacher_adapter"].options["targets"] == ["qkv"]
    assert any("jointly" in note for note in slad.notes)
    kd_ft = load_record(paths["kd-ft"])
    assert kd_ft.components["teacher_adapter"].name == "finetune"
    assert kd_ft.metric("teacher_top1").value is not None


def test_the_methods_and_their_settings():
    registry = plugins.get_registry()
    for name, mapping in (("slad", "even"), ("slad-first", "first"), ("slad-last", "last")):
        method = registry.get("methods", name).load()
        assert method.fit.keywords["mapping"] == mapping
    # own-fit methods and recipes that adapt the teacher's backbone run on distill alone
    units, _ = runner.plan(
        registry, methods=["slad", "slad-first", "kd-ft", "kd-lora"], smoke=True, seeds=[0]
    )
    assert {unit.protocol.name for unit in units} == {"distill"}
    for name, mode in (("kd-ft", "ft"), ("kd-lora", "lora")):
        recipe = registry.get("methods", name).load().recipe
        assert recipe.teacher_mode == mode
        assert (
            recipe.as_dict()["losses"]
            == registry.get("methods", "kd").load().recipe.as_dict()["losses"]
        )
    with pytest.raises(ValueError, match="mapping"):
        slad_method("x", mapping="middle")

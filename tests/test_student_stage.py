"""The one student-training stage: load-or-train through its cache slot, the teacher source
as a pluggable part, and the recipe checks every protocol now shares."""

import pytest
import torch

from kdbench import plugins
from kdbench.cache import tensor_digest
from kdbench.distillation import Classifier, Needs, init_backbone
from kdbench.errors import ConfigError
from kdbench.methods import CE, LossTerm, Recipe
from kdbench.student_stage import CacheSlot, FrozenTeacher, StageData, train_student
from kdbench.train import TrainConfig

KD = Recipe(losses=(CE, LossTerm("kd", 1.0, {"temperature": 4.0})))
BUDGET = TrainConfig(epochs=1, batch_size=8, lr=1e-3, seed=0)


def _student(registry, seed=0):
    torch.manual_seed(seed)
    spec = {"name": "shapes-student", "options": {"pretrained": False}}
    return Classifier(init_backbone(registry, "students", spec), 3)


class CountingTeacher:
    """A teacher source that records what it was asked for."""

    def __init__(self, registry):
        torch.manual_seed(1)
        spec = {"name": "shapes-teacher", "options": {"pretrained": False}}
        self.model = Classifier(init_backbone(registry, "teachers", spec), 3)
        self.embed_dim = self.model.backbone.embed_dim
        self.num_layers = self.model.backbone.num_layers
        self.calls: list[int] = []

    def outputs(self, images, needs: Needs):
        self.calls.append(len(images))
        frozen = FrozenTeacher(self.model, self.embed_dim, self.num_layers, "cpu")
        return frozen.outputs(images, needs)

    def notes(self):
        return ["counting teacher"]


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=g)
    transfer = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    return StageData(images, torch.arange(12) % 3, 3, transfer)


def test_the_cache_slot_trains_once_then_loads_the_same_student(world_weights, tmp_path, data):
    registry = plugins.get_registry()
    teacher = CountingTeacher(registry)
    slot = CacheSlot(tmp_path / "students", "key-a")
    kwargs = dict(teacher=teacher, registry=registry, device="cpu", cache=slot)
    first = train_student(
        _student(registry), KD, data, BUDGET, checkpoint=tmp_path / "a.pt", **kwargs
    )
    assert not first.cached and first.seconds > 0 and "counting teacher" in first.notes
    assert set(first.components) == {"loss:ce", "loss:kd"}
    again = train_student(
        _student(registry, seed=5), KD, data, BUDGET, checkpoint=tmp_path / "b.pt", **kwargs
    )
    assert again.cached and again.seconds == pytest.approx(first.seconds)
    assert tensor_digest(again.model) == tensor_digest(first.model)
    assert teacher.calls == [16]  # the cached load asked the teacher for nothing
    other = CacheSlot(tmp_path / "students", "key-b")
    fresh = train_student(
        _student(registry),
        KD,
        data,
        BUDGET,
        checkpoint=tmp_path / "c.pt",
        teacher=teacher,
        registry=registry,
        device="cpu",
        cache=other,
    )
    assert not fresh.cached and teacher.calls == [16, 16]


def test_one_seed_gives_the_same_student_and_no_slot_always_trains(world_weights, tmp_path, data):
    registry = plugins.get_registry()
    runs = [
        train_student(
            _student(registry),
            KD,
            data,
            BUDGET,
            teacher=CountingTeacher(registry),
            registry=registry,
            device="cpu",
            checkpoint=tmp_path / f"{i}.pt",
        )
        for i in range(2)
    ]
    assert not runs[0].cached and not runs[1].cached
    assert tensor_digest(runs[0].model) == tensor_digest(runs[1].model)


def test_transfer_images_join_only_when_the_recipe_reads_the_teacher(world_weights, tmp_path, data):
    registry = plugins.get_registry()
    no_transfer = Recipe(losses=KD.losses, transfer_set=False)
    for recipe, seen in ((KD, 16), (no_transfer, 12)):
        teacher = CountingTeacher(registry)
        train_student(
            _student(registry),
            recipe,
            data,
            BUDGET,
            teacher=teacher,
            registry=registry,
            device="cpu",
            checkpoint=tmp_path / f"{seen}.pt",
        )
        assert teacher.calls == [seen]
    label_only = Recipe(losses=(CE,), teacher_mode=None)
    teacher = CountingTeacher(registry)
    trained = train_student(
        _student(registry),
        label_only,
        data,
        BUDGET,
        teacher=teacher,
        registry=registry,
        device="cpu",
        checkpoint=tmp_path / "ce.pt",
    )
    assert teacher.calls == [] and trained.notes == []


def test_teacher_losses_without_a_teacher_mode_are_refused(world_weights, tmp_path, data):
    registry = plugins.get_registry()
    broken = Recipe(losses=KD.losses, teacher_mode=None)
    with pytest.raises(ConfigError, match="teacher_mode is None"):
        train_student(
            _student(registry),
            broken,
            data,
            BUDGET,
            teacher=CountingTeacher(registry),
            registry=registry,
            device="cpu",
            checkpoint=tmp_path / "x.pt",
        )


def test_the_base_stage_is_trained_once_per_method_seed_and_config(world_weights, tmp_path):
    """fewshot and segmentation share the base stage's cache slot: the second protocol
    reuses the student the first trained; another seed or another recipe trains anew."""
    from kdbench import runner
    from kdbench.record_files import load_record

    registry = plugins.get_registry()

    def run(protocols, methods, seeds, out=tmp_path):
        units, _ = runner.plan(
            registry, protocols=protocols, methods=methods, seeds=seeds, smoke=True
        )
        report = runner.run_units(units, registry=registry, out=out, progress=False)
        assert not report.failed, [o.message for o in report.failed]

    run(["fewshot", "segmentation"], ["kd"], [0])
    first = load_record(tmp_path / "embedded/fewshot/kd-seed0.smoke.json")
    shared = load_record(tmp_path / "embedded/segmentation/kd-seed0.smoke.json")
    assert not any("reused from the cache" in n for n in first.notes)
    assert any("reused from the cache" in n for n in shared.notes)
    # the threads the cached student was trained on, which may not be this unit's
    threads = f"on {torch.get_num_threads()} torch thread(s)"
    assert any("reused from the cache" in n and threads in n for n in shared.notes)
    assert shared.cost.train_seconds == first.cost.train_seconds
    # on another thread count the student is trained again: a cached result is always the
    # one this run's own numerics (torch, device, CPU threads) would have computed
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1 if threads_before != 1 else 2)
    try:
        run(["segmentation"], ["kd"], [0], out=tmp_path / "other-threads")
    finally:
        torch.set_num_threads(threads_before)
    other = load_record(tmp_path / "other-threads/embedded/segmentation/kd-seed0.smoke.json")
    assert not any("reused from the cache" in n for n in other.notes)
    run(["segmentation"], ["kd", "supervised"], [1])
    for name in ("kd-seed1", "supervised-seed1"):
        fresh = load_record(tmp_path / f"embedded/segmentation/{name}.smoke.json")
        assert not any("reused from the cache" in n for n in fresh.notes), name

"""The segmentation protocol: support draws, backbone resizing, end to end on Shapes scenes
and on a VOC-style fixture with a small timm DINOv2 ViT saved locally, and bad input."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from kdbench import plugins, runner
from kdbench.data.coco import load_coco
from kdbench.data.scenes import scene_presence, split_presence
from kdbench.data.voc import load_voc
from kdbench.hookspecs import hookimpl
from kdbench.metrics import miou
from kdbench.models.adapters import Adapter
from kdbench.models.backbone import resample_backbone
from kdbench.models.segmenter import token_features
from kdbench.protocols.base import ConfigError
from kdbench.protocols.segmentation import Segmentation, configured_adapters
from kdbench.record_files import load_record
from kdbench.segmentation import (
    ShotScores,
    draw_support,
    draw_support_sets,
    fit_head,
    frozen_confusions,
    head_confusions,
    stream_seed,
)
from kdbench.train import TrainConfig
from kdbench.unit_place import PlanError
from kdbench.world.source import shapes_scenes
from tests.data.fixtures import make_coco, make_miniimagenet, make_voc, write_label_png


def _run(tmp_path, methods, suite="embedded", overrides=None):
    registry = plugins.get_registry()
    units, _ = runner.plan(
        registry,
        protocols=["segmentation"],
        methods=methods,
        suite=suite,
        smoke=True,
        overrides=overrides,
    )
    return runner.run_units(units, registry=registry, out=tmp_path, progress=False)


# -- support draws ------------------------------------------------------------------------


def _presence(seed=0, n=40, classes=6):
    g = np.random.default_rng(seed)
    presence = g.random((n, classes)) < 0.3
    presence[:, 0] = True  # a background in every image
    presence[:, classes - 1] = False
    presence[:2, classes - 1] = True  # a rare class, shown by two images
    return presence


def test_support_draws_are_deterministic_and_cover_every_class():
    presence = _presence()
    for k in (1, 2, 5):
        a, b = draw_support(presence, k, 0), draw_support(presence, k, 0)
        assert np.array_equal(a.indices, b.indices) and a.digest == b.digest
        assert a.digest != draw_support(presence, k, 1).digest
        shown = presence[a.indices].sum(0)
        assert (shown[:-1] >= k).all(), shown  # every class but the rare one has k images
        assert a.indices.size <= k * presence.shape[1]
        assert np.array_equal(a.indices, np.unique(a.indices))
    assert draw_support(presence, 2, 0).short == {}
    five = draw_support(presence, 5, 0)
    assert five.short == {5: 2}  # the rare class is stated, with what it got
    assert set(np.flatnonzero(presence[:, 5])) <= set(five.indices)
    absent = presence.copy()
    absent[:, 3] = False
    assert draw_support(absent, 1, 0).short == {3: 0}
    with pytest.raises(ValueError, match="positive"):
        draw_support(presence, 0, 0)


def test_scene_presence_ignores_255():
    masks = torch.tensor([[[0, 1], [255, 255]], [[2, 2], [2, 255]]], dtype=torch.uint8)
    assert scene_presence(masks, 3).tolist() == [[True, True, False], [False, False, True]]


def test_presence_tables_of_real_layouts(tmp_path):
    voc = load_voc(make_voc(tmp_path, classes=["background", "a", "b", "c"]), "train")
    assert split_presence(voc).tolist() == [
        [True, True, False, False],
        [True, False, True, False],
        [True, False, False, True],
    ]
    coco = load_coco(make_coco(tmp_path, train_images=2), "train")  # from the instance lists
    assert split_presence(coco).tolist() == [[True, True, True, True]] * 2


def test_resampled_student_matches_the_world_loader(world_weights):
    from kdbench.world.models import shapes_student

    registry = plugins.get_registry()
    small = shapes_student()
    big = resample_backbone(small, registry, "students", {"name": "shapes-student"}, 64)
    assert big.input_size == (64, 64) and big.grid_size == (16, 16)
    reference = shapes_student(img_size=64)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(big.state_dict()[name], tensor)
    assert resample_backbone(big, registry, "students", {"name": "shapes-student"}, 64) is big


# -- embedded end to end --------------------------------------------------------------------


def test_embedded_units_write_rescorable_records(world_weights, tmp_path):
    report = _run(tmp_path, ["teacher", "supervised"])
    assert not report.failed, [o.message for o in report.failed]
    teacher = load_record(tmp_path / "embedded/segmentation/teacher-seed0.smoke.json")
    supervised = load_record(tmp_path / "embedded/segmentation/supervised-seed0.smoke.json")
    names = {m.name for m in teacher.metrics}
    assert names == {
        "miou", "miou_1shot", "miou_2shot", "miou_linear", "absent_classes", "train_seconds",
    }  # fmt: skip
    head = teacher.metric("miou")
    assert head.headline and 0 <= head.value <= 100 and head.n == 2 and head.ci95 is not None
    assert teacher.metric("train_seconds").value is None
    assert supervised.metric("train_seconds").value > 0
    # the stored confusion matrices give back the metrics
    stats = teacher.statistics
    for k in (1, 2):
        values = [100 * miou(np.array(cm)).mean for cm in stats["confusion"]["linear"][f"{k}shot"]]
        assert np.mean(values) == pytest.approx(teacher.metric(f"miou_{k}shot").value)
        assert np.array(stats["confusion"]["linear"][f"{k}shot"][0]).sum() > 0
    # every method saw the same support sets and evaluation scenes
    assert teacher.draws == supervised.draws
    assert set(teacher.draws) == {
        "support_pool", "eval", "support/1shot/draw0", "support/1shot/draw1",
        "support/2shot/draw0", "support/2shot/draw1",
    }  # fmt: skip
    assert stats["backbone"]["input_size"] == [64, 64] and stats["backbone"]["grid_size"] == [
        16,
        16,
    ]
    assert stats["backbone"]["name"] == "shapes-vit-teacher"
    assert supervised.statistics["backbone"]["name"] == "shapes-vit-student"
    assert len(stats["classes"]) == 7 and stats["classes"][0] == "background"
    assert teacher.components["subject"].name == "shapes-teacher"
    assert teacher.components["adapter:linear"].name == "linear"
    assert any("from-scratch reference" in note for note in supervised.notes)
    assert any("token grid 16x16" in note for note in teacher.notes)
    assert teacher.dataset.sizes == {"support_pool": 24, "eval": 12}


def test_every_adapter_runs_and_adapted_runs_start_from_the_linear_head(world_weights, tmp_path):
    adapters = ["linear", "multilayer", "lora", "svf", "finetune"]
    report = _run(
        tmp_path,
        ["student"],
        overrides={"segmentation.adapters": adapters, "segmentation.draws": [0]},
    )
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(tmp_path / "embedded/segmentation/student-seed0.smoke.json")
    for name in adapters:
        assert record.metric(f"miou_{name}").value is not None
        assert record.components[f"adapter:{name}"].name == name
    assert record.components["adapter:lora"].options["r"] == 16
    assert record.metric("miou").value == record.metric("miou_linear").value


def test_adapted_only_runs_still_train_the_linear_head_first(world_weights, tmp_path):
    report = _run(
        tmp_path,
        ["student"],
        overrides={"segmentation.adapters": ["svf"], "segmentation.draws": [0]},
    )
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(tmp_path / "embedded/segmentation/student-seed0.smoke.json")
    assert record.metric("miou").value == record.metric("miou_svf").value
    assert record.metric("miou").ci95 is None and record.metric("miou").n == 1


def test_bad_configs_are_refused(world_weights, tmp_path):
    report = _run(tmp_path, ["teacher"], overrides={"segmentation.adapters": ["lorra"]})
    [failed] = report.failed
    assert failed.record.error.type == ConfigError.__name__
    assert "adapters" in failed.message
    report = _run(tmp_path, ["teacher"], overrides={"segmentation.shots": [1, 1]})
    assert re.search(r"shots \[1, 1\] must be distinct values", report.failed[0].message)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("segmentation.shots", [3], r"shots\[0\]: expected one of 1, 2, 5, 10, got 3"),
        ("segmentation.draws", [], "draws: expected a non-empty list"),
    ],
)
def test_bad_configs_are_refused_when_planned(key, value, message):
    with pytest.raises(ConfigError, match=message):
        _run(None, ["teacher"], overrides={key: value})


# -- adapters come from the registry --------------------------------------------------------


class NormsOnly(Adapter):
    """Only the LayerNorm parameters train (a plugin's adapter that is not frozen)."""

    name = "norms-test"
    applied = 0

    def apply(self, backbone):
        type(self).applied += 1
        backbone.requires_grad_(False)
        for module in backbone.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.requires_grad_(True)
        return backbone


class EarlierLayer(Adapter):
    """Frozen backbone, the head reads one earlier layer (a plugin's frozen adapter)."""

    name = "earlier-test"
    frozen = True

    def __init__(self, back: int = 1) -> None:
        self.back = back

    def options(self):
        return {"back": self.back}

    @property
    def layers(self):
        return (-1 - self.back,)

    def apply(self, backbone):
        raise AssertionError("a frozen adapter's outputs are cached; it is never applied")


class AdapterPlugin:
    @hookimpl
    def kdbench_register_adapters(self, register):
        register(NormsOnly)
        register(EarlierLayer)


def test_an_adapter_registered_by_a_plugin_runs_with_its_frozen_flag_and_options(
    world_weights, tmp_path
):
    adapters = [
        {"name": "earlier-test", "options": {"back": 2}},
        {"name": "norms-test", "lr": 1e-3},
    ]
    NormsOnly.applied = 0
    with plugins.temporary_plugin(AdapterPlugin(), distribution="adapter-tests", version="2"):
        report = _run(
            tmp_path,
            ["student"],
            overrides={"segmentation.adapters": adapters, "segmentation.draws": [0]},
        )
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(tmp_path / "embedded/segmentation/student-seed0.smoke.json")
    for name in ("earlier-test", "norms-test"):
        metric = record.metric(f"miou_{name}")
        assert metric.value is not None and metric.unit == "%" and metric.higher_is_better
        ref = record.components[f"adapter:{name}"]
        assert (ref.name, ref.distribution, ref.version) == (name, "adapter-tests", "2")
    assert record.components["adapter:earlier-test"].options == {"back": 2}
    assert record.metric("miou").value == record.metric("miou_earlier-test").value
    assert NormsOnly.applied == 2  # one adapted run per (k, draw): 1 and 2 shots, draw 0
    assert set(record.statistics["confusion"]) == {"earlier-test", "norms-test"}


def test_adapter_entries_are_checked_before_any_work(world_weights):
    config = Segmentation().config("embedded", smoke=True)
    with plugins.temporary_plugin(AdapterPlugin(), distribution="adapter-tests") as registry:
        choices = configured_adapters(registry, {**config, "adapters": ["lora", "earlier-test"]})
        assert [(c.name, c.adapter.frozen, c.lr) for c in choices] == [
            ("lora", False, 1e-3),
            ("earlier-test", True, None),
        ]
        assert choices[0].ref()["options"]["r"] == 16  # from the segmentation.lora section
        bad = [
            (["norms-test"], "norms-test.*needs a learning rate"),
            ([{"name": "earlier-test", "options": {"depth": 2}}], "earlier-test.*depth"),
            ([{"name": "linear", "lr": 1e-3, "epochs": 2}], "must be a name or a mapping"),
            (["linear", "linear"], "listed twice"),
            ([{"name": "linear", "lr": 1e-3}], "'linear' is frozen .* drop it"),
            (["lorra"], "unknown adapter 'lorra'. Did you mean 'lora'"),
            ([], "at least one adapter"),
        ]
        for adapters, message in bad:
            with pytest.raises(ConfigError, match=message):
                configured_adapters(registry, {**config, "adapters": adapters})


def test_adapters_cannot_take_the_name_of_a_setting_or_a_metric():
    class Named(Adapter):
        frozen = True

    class Plugin:
        @hookimpl
        def kdbench_register_adapters(self, register):
            register(Named, name="head")
            register(Named, name="1shot")

    config = Segmentation().config("embedded", smoke=True)
    with plugins.temporary_plugin(Plugin(), distribution="tests") as registry:
        for name in ("head", "1shot"):
            with pytest.raises(ConfigError, match=f"cannot be called '{name}'"):
                configured_adapters(registry, {**config, "adapters": [name]})


def test_per_adapter_metrics_are_a_declared_family():
    protocol = Segmentation()
    spec = protocol.metric("miou_anything")
    assert (spec.name, spec.higher_is_better, spec.unit) == ("miou_anything", True, "%")
    assert "anything adapter" in spec.description
    assert protocol.metric("miou_1shot").description.startswith("mIoU with 1 support")
    assert protocol.declares("miou_linear") and not protocol.declares("accuracy")
    with pytest.raises(KeyError, match="declares no metric 'accuracy'"):
        protocol.metric("accuracy")


# -- the library on its own -----------------------------------------------------------------


def test_the_library_scores_a_backbone_without_the_protocol(world_weights):
    from kdbench.world.models import shapes_student

    scenes = shapes_scenes(pool_size=24, eval_size=6, domain="base", max_objects=4)
    backbone = shapes_student(img_size=64)
    support = draw_support_sets(scenes.presence, scenes.load_pool, [1, 2], [0])
    assert set(support.draws) == {(1, 0), (2, 0)}
    rows = support.rows((2, 0))
    assert (support.images[rows] == scenes.load_pool(support.draws[(2, 0)].indices)[0]).all()
    train = TrainConfig(epochs=1, steps=3, batch_size=4, lr=1e-2)
    per_k, heads = frozen_confusions(
        backbone, (), scenes, support, seed=0, train=train, batch_size=8
    )
    assert sorted(per_k) == [1, 2] and len(per_k[1]) == 1 and set(heads) == set(support.draws)
    # the same as one head by hand, from the documented building blocks
    tokens = token_features(backbone, support.images[rows], (), device="cpu", batch_size=8)
    head = fit_head(
        tokens,
        support.masks[rows],
        scenes.num_classes,
        stream_seed(0, "segmentation/head", 2, 0),
        dataclasses.replace(train, seed=stream_seed(0, "segmentation/order", 2, 0)),
    )
    eval_tokens = token_features(backbone, scenes.eval_images, (), device="cpu", batch_size=8)
    [cm] = head_confusions([head], eval_tokens, scenes.eval_masks, scenes.num_classes)
    assert torch.equal(cm, per_k[2][0]) and cm.sum() == (scenes.eval_masks != 255).sum()
    scores = ShotScores.of(per_k, [1, 2])
    assert scores.percent.shape == (2, 1)
    assert scores.statistics()["confusion"]["2shot"] == [cm.tolist()]


# -- the standard suite on fixtures -------------------------------------------------------

VIT = {"depth": 2, "embed_dim": 48, "num_heads": 2}


def _tiny_dinov2(path, img_size=28):
    import timm

    model = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=img_size, **VIT
    )
    torch.save(model.state_dict(), path)
    return path


def _standard_overrides(tmp_path, voc_root):
    weights = str(_tiny_dinov2(tmp_path / "vit.pth"))
    spec = {"name": "timm:vit_small_patch14_dinov2", "options": {"weights": weights, **VIT}}
    base = make_miniimagenet(tmp_path / "mini", classes_per_split=(3, 2, 2), images_per_class=2)
    return {
        "segmentation.base.teacher": {**spec, "options": {**spec["options"], "img_size": 28}},
        "segmentation.base.student": {**spec, "options": {**spec["options"], "img_size": 28}},
        "segmentation.base.root": str(base),
        "segmentation.base.image_size": 28,
        "segmentation.base.resize": 32,
        "segmentation.data.dataset": "voc",
        "segmentation.data.root": str(voc_root),
    }


def test_standard_suite_on_a_voc_fixture_with_a_local_dinov2(tmp_path):
    voc = make_voc(tmp_path / "voc", classes=["background", "a", "b", "c"])
    overrides = _standard_overrides(tmp_path, voc)
    report = _run(tmp_path / "out", ["teacher", "supervised"], "standard", overrides)
    assert not report.failed, [o.message for o in report.failed]
    teacher_path, supervised_path = (o.path for o in report.outcomes)
    assert supervised_path.name == "supervised@timm_vit_small_patch14_dinov2-seed0.smoke.json"
    # the reference row reads only the scenes; the trained row also the base classes
    assert teacher_path.parent.parent.name.startswith("voc-")
    assert supervised_path.parent.parent.name.startswith("miniimagenet+voc-")
    teacher, supervised = load_record(teacher_path), load_record(supervised_path)
    for record in (teacher, supervised):
        assert 0 <= record.metric("miou").value <= 100
        assert record.dataset.name == "voc" and record.dataset.manifest_sha256
        assert record.dataset.sizes == {"support_pool": 3, "eval": 2}
        backbone = record.statistics["backbone"]
        assert backbone["input_size"] == [56, 56] and backbone["grid_size"] == [4, 4]
        assert backbone["patch_size"] == 14
        cm = np.array(record.statistics["confusion"]["linear"]["1shot"][0])
        assert cm.shape == (4, 4) and cm.sum() > 0
    assert teacher.draws == supervised.draws
    assert teacher.statistics["support"]["1shot"]["draw0"]["short"] == {}


def test_standard_suite_states_classes_the_pool_cannot_cover(tmp_path):
    voc = make_voc(tmp_path / "voc", classes=["background", "a", "b", "c", "d"])
    report = _run(tmp_path / "out", ["teacher"], "standard", _standard_overrides(tmp_path, voc))
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(report.outcomes[0].path)
    assert record.statistics["support"]["1shot"]["draw0"]["short"] == {"d": 0}
    assert any("class 'd' is shown by only 0 support image(s)" in n for n in record.notes)


def test_mask_values_out_of_range_name_the_file_and_values(tmp_path):
    voc = make_voc(tmp_path / "voc", classes=["background", "a", "b", "c"])
    bad = voc / "SegmentationClass" / "2007_000039.png"
    mask = np.zeros((14, 18), dtype=np.uint8)
    mask[1, 1], mask[2, 2] = 9, 255
    write_label_png(bad, mask)
    report = _run(tmp_path / "out", ["teacher"], "standard", _standard_overrides(tmp_path, voc))
    [failed] = report.failed
    assert str(bad) in failed.message and "[9]" in failed.message
    assert "outside [0, 4)" in failed.message


def test_the_standard_suite_asks_for_the_dataset_folder(tmp_path):
    with pytest.raises(PlanError, match=r"--set segmentation\.data\.root=PATH"):
        _run(tmp_path, ["teacher"], "standard", {"segmentation.base.teacher.options": {}})

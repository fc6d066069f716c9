"""The segmentation protocol: support draws, backbone resizing, end to end on Shapes scenes
and on a VOC-style fixture with a small timm DINOv2 ViT saved locally, and bad input."""

import re

import numpy as np
import pytest
import torch

from kdbench import plugins, runner
from kdbench.data.coco import load_coco
from kdbench.data.scenes import scene_presence, split_presence
from kdbench.data.voc import load_voc
from kdbench.metrics import miou
from kdbench.models.backbone import resample_backbone
from kdbench.protocols.base import ConfigError
from kdbench.results import load_record
from kdbench.segmentation import draw_support
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


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("segmentation.shots", [3], r"shots \[3\] must be distinct values from \[1, 2, 5, 10\]"),
        ("segmentation.adapters", ["lorra"], "adapters"),
        ("segmentation.draws", [], "draws"),
    ],
)
def test_bad_configs_are_refused(world_weights, tmp_path, key, value, message):
    report = _run(tmp_path, ["teacher"], overrides={key: value})
    [failed] = report.failed
    assert failed.record.error.type == ConfigError.__name__
    assert re.search(message, failed.message)


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
    teacher = load_record(tmp_path / "out/standard/segmentation/teacher-seed0.smoke.json")
    supervised = load_record(tmp_path / "out/standard/segmentation/supervised-seed0.smoke.json")
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
    record = load_record(tmp_path / "out/standard/segmentation/teacher-seed0.smoke.json")
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
    report = _run(tmp_path, ["teacher"], "standard", {"segmentation.base.teacher.options": {}})
    [failed] = report.failed
    assert "--set segmentation.data.root=PATH" in failed.message

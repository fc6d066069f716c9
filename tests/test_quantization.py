"""Precision as an evaluation axis: parsing, the calibration set, static quantisation, the
fewshot and device units at a precision, and the refusals with their reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench import plugins, runner
from kdbench.errors import ConfigError
from kdbench.quantization.calibration import calibration_indices, indices_digest
from kdbench.quantization.precisions import (
    UnsupportedPrecision,
    parse_precision,
    parse_precisions,
)
from kdbench.record_files import load_record

pytest.importorskip("torchao")


def _tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()


# -- names -------------------------------------------------------------------------------


def test_precision_names_parse_into_their_scheme():
    assert parse_precision("fp32").is_fp32
    int8 = parse_precision("int8")
    assert (int8.bits, int8.per_channel, int8.simulated) == (8, True, False)
    tensor = parse_precision("INT8-tensor")
    assert (tensor.name, tensor.per_channel) == ("int8-tensor", False)
    sim = parse_precision("int4-sim")
    assert (sim.bits, sim.simulated) == (4, True) and "simulated" in sim.label
    assert sim.bit_config()["weights"] == {
        "bits": 4,
        "scheme": "symmetric",
        "granularity": "per-channel",
    }
    assert [p.name for p in parse_precisions("fp32,int8 int8")] == ["fp32", "int8"]
    assert [p.name for p in parse_precisions(None)] == ["fp32"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("int4", "int4-sim"),  # no kernel: the simulated name is suggested
        ("int16-tensor", "int16-tensor-sim"),
        ("int1-sim", "outside 2-16"),
        ("fp16", "device protocol"),
        ("int8x", "unknown precision"),
    ],
)
def test_an_unsupported_precision_gives_its_reason(name, says):
    with pytest.raises(UnsupportedPrecision, match=says):
        parse_precision(name)


def test_a_protocol_that_cannot_quantise_says_so_in_the_plan(monkeypatch):
    from kdbench.protocols.segmentation import Segmentation

    monkeypatch.setattr(Segmentation, "quantisable", False)
    units, unsupported = runner.plan(
        plugins.get_registry(),
        protocols=["segmentation", "fewshot"],
        methods=["kd"],
        smoke=True,
        precisions=["int8"],
    )
    assert [u.protocol.name for u in units] == ["fewshot"]
    assert units[0].precision == "int8" and units[0].row == "kd~int8"
    assert units[0].record_path(Path("o")).name == "kd~int8-seed0.smoke.json"
    (proto, row, reason), *_ = unsupported
    assert (proto, row) == ("segmentation", "~int8")
    assert "does not score quantised students" in reason
    with pytest.raises(ConfigError, match="int4-sim"):
        runner.plan(plugins.get_registry(), protocols=["fewshot"], precisions=["int4"])


def test_fp32_units_keep_their_config_and_record_path():
    registry = plugins.get_registry()
    (plain,), _ = runner.plan(registry, protocols=["fewshot"], methods=["kd"], smoke=True)
    (fp32,), _ = runner.plan(
        registry, protocols=["fewshot"], methods=["kd"], smoke=True, precisions=["fp32"]
    )
    assert "precision" not in fp32.config and fp32.config == plain.config
    assert fp32.precision is None and fp32.row == "kd"


# -- calibration and quantisation --------------------------------------------------------


def test_the_calibration_set_is_a_fixed_seeded_subset():
    first = calibration_indices(1000, 64, seed=0)
    assert torch.equal(first, calibration_indices(1000, 64, seed=0))
    assert indices_digest(first) == indices_digest(calibration_indices(1000, 64, seed=0))
    assert not torch.equal(first, calibration_indices(1000, 64, seed=1))
    assert len(set(first.tolist())) == 64 and torch.equal(first, first.sort().values)
    assert calibration_indices(10, 64, seed=0).tolist() == list(range(10))  # all, if fewer
    with pytest.raises(ValueError):
        calibration_indices(0, 4, seed=0)


def test_static_quantisation_is_deterministic_and_counts_its_bytes():
    from kdbench.quantization.ptq import quantize

    model = _tiny_cnn()
    images = torch.rand(32, 3, 8, 8)
    x = torch.rand(5, 3, 8, 8)
    one = quantize(model, parse_precision("int8"), images)
    two = quantize(model, parse_precision("int8"), images)
    assert torch.equal(one(x), two(x))  # the same calibration gives the same model
    assert torch.allclose(one(x), model(x), atol=0.05)
    assert one.quantised_weights == one.weight_tensors == 3
    # int8 weights (+ fp32 scales and biases) weigh about a quarter of the fp32 ones
    assert one.weight_bytes < 0.5 * one.fp32_weight_bytes
    four = quantize(model, parse_precision("int4-sim"), images)
    assert four.weight_bytes < one.weight_bytes
    assert (four(x) - model(x)).abs().mean() > (one(x) - model(x)).abs().mean()
    assert one.activation_peak_bytes() > 0
    assert one.describe()["calibration_images"] == 32


def test_per_tensor_weights_share_one_scale_per_layer():
    from kdbench.quantization.ptq import quantize

    model = _tiny_cnn()
    quantized = quantize(model, parse_precision("int8-tensor"), torch.rand(16, 3, 8, 8))
    scales = [
        getattr(quantized.graph, str(node.args[1].target))
        for node in quantized.graph.graph.nodes
        if "dequantize_per_channel" in str(node.target)
    ]
    assert len(scales) == 3
    assert all(torch.all(s == s[0]) for s in scales)


# -- protocols ---------------------------------------------------------------------------


def test_fewshot_scores_the_student_at_a_precision_with_the_paired_drop(world_weights, tmp_path):
    registry = plugins.get_registry()
    units, _ = runner.plan(
        registry,
        protocols=["fewshot"],
        methods=["kd"],
        smoke=True,
        precisions=["fp32", "int8", "int4-sim"],
    )
    assert [u.row for u in units] == ["kd", "kd~int8", "kd~int4-sim"]
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    folder = tmp_path / "embedded/fewshot"
    fp32 = load_record(folder / "kd-seed0.smoke.json")
    int8 = load_record(folder / "kd~int8-seed0.smoke.json")
    int4 = load_record(folder / "kd~int4-sim-seed0.smoke.json")
    assert "precision" not in fp32.protocol.config
    assert "weight_mb" not in {m.name for m in fp32.metrics}
    for record, name in ((int8, "int8"), (int4, "int4-sim")):
        assert record.protocol.config["precision"]["name"] == name
        assert record.draws["episodes_1shot"] == fp32.draws["episodes_1shot"]
        for k in (1, 5):
            # the fp32 twin is the fp32 unit's score, the drop its paired difference
            assert record.metric(f"acc_{k}shot_fp32").value == pytest.approx(
                fp32.metric(f"acc_{k}shot").value
            )
            twin = np.array(record.statistics[f"fp32_correct_{k}shot"])
            mine = np.array(record.statistics[f"correct_{k}shot"])
            drop = record.metric(f"acc_{k}shot_drop")
            assert drop.value == pytest.approx(100 * (twin - mine).mean() / 75)
            assert drop.ci95 is not None and not drop.higher_is_better
        assert record.metric("weight_mb").value > 0
        assert record.metric("activation_peak_mb").value > 0
        assert record.statistics["precision"]["calibration_images"] == 32
    assert int8.draws["calibration"] == int4.draws["calibration"]
    assert int4.statistics["precision"]["simulated"] is True
    assert any("simulated" in note for note in int4.notes)
    assert int4.metric("weight_mb").value < int8.metric("weight_mb").value


def _twin_units(protocol: str, method: str, tmp_path: Path, **options):
    """A method's smoke unit of ``protocol`` at fp32 and int8; their two records."""
    registry = plugins.get_registry()
    units, unsupported = runner.plan(
        registry,
        protocols=[protocol],
        methods=[method],
        smoke=True,
        precisions=["fp32", "int8"],
        **options,
    )
    assert [u.row for u in units] == [method, f"{method}~int8"], unsupported
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    folder = tmp_path / "embedded" / protocol
    fp32 = load_record(folder / f"{method}-seed0.smoke.json")
    int8 = load_record(folder / f"{method}~int8-seed0.smoke.json")
    assert int8.protocol.config["precision"]["name"] == "int8"
    assert "precision" not in fp32.protocol.config
    assert "weight_mb" not in {m.name for m in fp32.metrics}
    assert (
        0 < int8.metric("weight_mb").value < int8.statistics["precision"]["fp32_weight_bytes"] / 1e6
    )
    assert int8.metric("activation_peak_mb").value > 0
    assert int8.draws["calibration"]
    return fp32, int8


def test_distill_scores_the_student_at_a_precision_paired_over_test_images(world_weights, tmp_path):
    fp32, int8 = _twin_units("distill", "kd", tmp_path)
    assert int8.metric("student_top1_fp32").value == pytest.approx(
        fp32.metric("student_top1").value
    )
    # the drop is paired over the same test images: the difference of the two confusion
    # matrices' traces, in points
    before = np.trace(np.array(int8.statistics["fp32_student_confusion"]))
    after = np.trace(np.array(int8.statistics["student_confusion"]))
    n = int8.metric("student_top1").n
    assert int8.metric("student_top1_drop").value == pytest.approx(100 * (before - after) / n)
    assert int8.metric("student_top1").value == pytest.approx(100 * after / n)
    assert int8.statistics["fp32_student_confusion"] == fp32.statistics["student_confusion"]
    assert int8.metric("teacher_top1").value == pytest.approx(fp32.metric("teacher_top1").value)


def test_oneclass_scores_the_student_at_a_precision_paired_over_tasks(world_weights, tmp_path):
    fp32, int8 = _twin_units("oneclass", "kd", tmp_path)
    assert int8.draws["tasks"] == fp32.draws["tasks"]
    assert int8.metric("auroc_fp32").value == pytest.approx(fp32.metric("auroc").value)
    fp32_tasks = np.array(int8.statistics["per_task"]["fp32_auroc"])
    tasks = np.array(int8.statistics["per_task"]["auroc"])
    assert fp32_tasks == pytest.approx(np.array(fp32.statistics["per_task"]["auroc"]))
    assert int8.metric("auroc_drop").value == pytest.approx((fp32_tasks - tasks).mean(), abs=1e-5)
    assert int8.metric("auroc").value == pytest.approx(tasks.mean(), abs=1e-5)


def test_segmentation_scores_frozen_heads_at_a_precision_paired_over_draws(world_weights, tmp_path):
    fp32, int8 = _twin_units(
        "segmentation", "kd", tmp_path, overrides={"segmentation.adapters": ["linear", "lora"]}
    )
    assert int8.metric("miou_fp32").value == pytest.approx(fp32.metric("miou").value)
    fp32_per_draw = int8.statistics["fp32"]["miou_per_draw"]["linear"]
    assert fp32_per_draw == fp32.statistics["miou_per_draw"]["linear"]
    assert int8.metric("miou_drop").n == len(int8.protocol.config["draws"])
    lora = int8.metric("miou_lora")
    assert lora.value is None and "fp32 only" in lora.reason
    assert fp32.metric("miou_lora").value is not None


def test_device_times_the_quantised_model_or_says_why_not(world_weights, tmp_path):
    registry = plugins.get_registry()
    units, _ = runner.plan(
        registry,
        protocols=["device"],
        methods=["student"],
        smoke=True,
        precisions=["int8", "int4-sim"],
        overrides={
            "device.precisions": ["fp32"],
            "device.threads": 1,
            "device.sensor": "none",
        },
        students=["shapes-resnet12"],
    )
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    assert not report.failed, [o.message for o in report.failed]
    records = {o.unit.precision: load_record(o.path) for o in report.outcomes}
    int8, sim = records["int8"], records["int4-sim"]
    assert int8.statistics["quantised"]["model"]["precision"] == "int8"
    if int8.statistics["quantised"]["reason"] is None:  # x86: oneDNN's int8 kernels ran
        assert int8.metric("quant_latency_p50_ms").value > 0
        assert int8.metric("quant_fp32_latency_p50_ms").value > 0
        assert int8.metric("quant_speedup").ci95 is not None
        assert any(k.startswith("onednn.q") for k in int8.statistics["quantised"]["kernels"])
    else:  # a CPU without them: null, and the record says why
        assert int8.metric("quant_latency_p50_ms").value is None
        assert "int8 kernels" in int8.metric("quant_latency_p50_ms").reason
    for name in ("quant_latency_p50_ms", "quant_speedup"):
        metric = sim.metric(name)
        assert metric.value is None and "simulated" in metric.reason


# -- quantisation-aware training -----------------------------------------------------------


def test_qat_wrappers_quantise_while_training_and_come_off_after():
    from kdbench.quantization.aware import QuantAware
    from kdbench.quantization.training import QuantisedLayer, quantise_weight

    model = _tiny_cnn()
    keys = set(model.state_dict())
    attached = QuantAware(bits=4).attach(model, total_steps=5)
    assert len(attached.layers) == 3
    conv = model[0]
    assert isinstance(conv, QuantisedLayer)
    # the 4-bit weight has at most 16 levels per output channel
    levels = quantise_weight(conv.layer.weight, 4)
    assert max(len(torch.unique(row)) for row in levels) <= 16
    model.train()
    x = torch.rand(4, 3, 8, 8)
    model(x).sum().backward()
    assert conv.layer.weight.grad is not None  # straight through the rounding
    assert float(conv.quantiser.range.high) > 0  # the input range was observed
    attached.remove()
    assert isinstance(model[0], torch.nn.Conv2d) and set(model.state_dict()) == keys


def test_a_recipe_without_quantise_keeps_its_dict_and_qat_is_not_a_default_method():
    from kdbench.methods import KD, QAT

    assert "quantise" not in KD.recipe.as_dict()  # cache keys of existing recipes unchanged
    assert QAT.recipe.as_dict()["quantise"] == {"kind": "qat", "bits": 4, "per_channel": True}
    assert QAT.recipe.quantise.scored_at() == "int4-sim"
    defaults = runner.default_methods(plugins.get_registry())
    assert "kd" in defaults and "qat" not in defaults


def test_planned_steps_counts_the_training_forwards():
    from kdbench.train import TrainConfig, planned_steps

    assert planned_steps(10, TrainConfig(epochs=3, batch_size=4, lr=1e-3)) == 9
    assert planned_steps(10, TrainConfig(epochs=3, batch_size=4, lr=1e-3, steps=5)) == 5

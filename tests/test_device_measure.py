"""Precisions (supported or reported unsupported), FLOPs, peak memory and one full
measurement of a small model with a fake energy sensor."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from kdbench.device import precision
from kdbench.device.flops import count_flops, count_params
from kdbench.device.measure import MeasureConfig, measure
from kdbench.device.memory import peak_memory, weights_bytes
from kdbench.device.sensors import EnergySensor
from kdbench.device.timing import Tier
from kdbench.world.models import ARCHS, build_vit

QUICK = dict(tier=Tier(10, 64, 0.0), batch_size=4, throughput_warmup=1, threads=1,
             throughput_min_batches=2, throughput_min_seconds=0.0, idle_seconds=0.3)  # fmt: skip


class Tiny(nn.Module):
    """Float images in, one Linear: cheap enough for every precision."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 16)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_fp16_without_native_support_is_unsupported_not_skipped(monkeypatch):
    monkeypatch.setattr(precision, "_cpu_dtype_supported", lambda p: p == "bf16")
    assert precision.support("fp32", "cpu") is None
    assert precision.support("bf16", "cpu") is None
    reason = precision.support("fp16", "cpu")
    assert reason.startswith("unsupported on cpu") and "fp16" in reason
    assert precision.support("int8", "cuda:0").startswith("unsupported on cuda")
    report = measure(Tiny(), torch.rand(64, 3, 8, 8), MeasureConfig(["fp32", "fp16"], **QUICK))
    metrics = {m.name: m for m in report.metrics()}
    assert metrics["latency_p50_ms"].value > 0
    for name in ("latency_p50_ms_fp16", "throughput_ips_fp16", "peak_memory_mb_fp16"):
        assert metrics[name].value is None and metrics[name].reason == reason
    assert "not in the configured precisions" in metrics["latency_p50_ms_int8"].reason


def test_precisions_parse_and_keep_a_fixed_order():
    assert precision.parse_precisions("int8, fp32,bf16") == ["fp32", "bf16", "int8"]
    with pytest.raises(ValueError, match="unknown precision"):
        precision.parse_precisions("fp8")


def test_int8_is_dynamic_quantization_of_linear_layers():
    if precision.support("int8", "cpu") is not None:
        pytest.skip(precision.support("int8", "cpu"))
    model = Tiny().eval()
    quantized, dtype = precision.prepare(model, "int8", "cpu")
    assert dtype == torch.float32 and "quantized.dynamic" in type(quantized.fc).__module__
    assert isinstance(model.fc, nn.Linear)  # the original is untouched
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(quantized(x), model(x), atol=0.05)
    # int8 weights: a quarter of fp32's plus the fp32 bias
    assert weights_bytes(quantized) < weights_bytes(model) / 3


def test_int8_coverage_of_a_cnn_is_null_with_the_reason_and_of_a_vit_per_layer():
    if precision.support("int8", "cpu") is not None:
        pytest.skip(precision.support("int8", "cpu"))
    import timm

    cnn = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    report = measure(cnn, torch.rand(64, 3, 32, 32), MeasureConfig(["fp32", "int8"], **QUICK))
    coverage = report.statistics()["precisions"]["int8"]["quantisation"]
    assert coverage["fraction"] is None and coverage["quantised_layers"] == 0
    assert coverage["weighted_layers"] == 20  # 20 Conv2d layers, no Linear (num_classes=0)
    assert "nothing was quantised" in coverage["reason"] and "Conv2d" in coverage["reason"]
    assert {layer["type"] for layer in coverage["layers"]} == {"Conv2d"}
    assert any(n.startswith("int8: nothing was quantised") for n in report.notes)
    # a ViT: its Linear layers are quantised, the patch embedding (a Conv2d) is not
    vit = build_vit("student").eval()
    report = measure(vit, torch.rand(64, 3, 32, 32), MeasureConfig(["fp32", "int8"], **QUICK))
    coverage = report.statistics()["precisions"]["int8"]["quantisation"]
    layers = {layer["name"]: layer for layer in coverage["layers"]}
    assert layers["model.patch_embed.proj"]["quantised"] is False
    assert layers["model.blocks.0.attn.qkv"]["quantised"] is True
    assert 0.9 < coverage["fraction"] < 1 and "reason" not in coverage
    assert any("weighted layers" in n and "ran in fp32" in n for n in report.notes)


def test_strict_fp32_turns_tf32_off_and_restores():
    """Checked the way a user's code reads the switches afterwards (the old getters)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_float32_matmul_precision("medium")
    try:
        with precision.strict_fp32():
            if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
                knobs = precision._fp32_knobs()
                assert knobs and all(k.fp32_precision == "ieee" for k in knobs)
            else:
                assert torch.backends.cuda.matmul.allow_tf32 is False
                assert torch.backends.cudnn.allow_tf32 is False
                assert torch.get_float32_matmul_precision() == "highest"
        assert torch.backends.cuda.matmul.allow_tf32 is True
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")


def test_flops_match_the_vit_formula():
    """Shapes student: T = 64 patches + 1 class token, D = 64, 4 blocks, patch 4."""
    model = build_vit("student").eval()
    count = count_flops(model, torch.rand(2, 3, 32, 32))  # per image, from a batch of 2
    t, d, depth = 65, ARCHS["student"]["embed_dim"], ARCHS["student"]["depth"]
    macs = 64 * (3 * 4 * 4) * d  # patch embedding
    macs += depth * (12 * t * d * d + 2 * t * t * d)  # qkv, proj, mlp (4x); QK^T and AV
    assert count.flops == 2 * macs
    assert count.gmacs == pytest.approx(count.gflops / 2)
    assert count_params(model) == sum(p.numel() for p in model.parameters())


class Widen(nn.Module):
    """Makes a 4 MB intermediate tensor."""

    def forward(self, x):
        big = x.new_zeros(1024, 1024) + 1  # 4 MiB of float32
        return big.sum() + x.sum()


def test_peak_memory_sees_weights_input_and_activations():
    model = nn.Sequential(nn.Linear(256, 256), Widen()).eval()
    x = torch.rand(1, 256)
    with torch.no_grad():
        reading = peak_memory(model, x, "cpu")
    assert reading.weights_bytes == (256 * 256 + 256) * 4
    assert reading.activation_bytes >= 1024 * 1024 * 4
    assert reading.bytes == reading.weights_bytes + 256 * 4 + reading.activation_bytes
    assert reading.megabytes == pytest.approx(reading.bytes / 1e6)


class TenWatts(EnergySensor):
    name = "ten-watts"
    update_period_s = 0.003  # windows stretch to 100x this: 0.3 s

    def available(self):
        return None

    def read_joules(self):
        return 10.0 * time.perf_counter()


def test_energy_from_a_sensor_over_the_latency_window():
    config = MeasureConfig(["fp32"], **QUICK)
    report = measure(Tiny(), torch.rand(64, 3, 8, 8), config, sensor=TenWatts())
    m = {x.name: x for x in report.metrics()}
    assert m["idle_power_w"].value == pytest.approx(10.0, rel=0.05)
    window = report.results["fp32"].latency
    assert window.seconds >= 0.3  # stretched to 100 update periods
    assert m["energy_mj_per_image"].value == pytest.approx(
        10.0 * window.seconds * 1000 / window.images, rel=0.05
    )
    # constant power: nothing above idle, so the dynamic figure is ~0 or refused as noise
    dynamic = m["energy_dynamic_mj_per_image"]
    assert dynamic.value is None or dynamic.value < 0.05 * m["energy_mj_per_image"].value
    assert m["throughput_energy_mj_per_image"].value > 0
    assert report.sensor == {"name": "ten-watts", "domain": "", "update_period_s": 0.003}


def test_a_precision_that_fails_at_run_time_is_reported(monkeypatch):
    def broken(model, name, device):
        if name == "bf16":
            raise NotImplementedError("'addmm' not implemented for 'BFloat16'")
        return model, torch.float32

    monkeypatch.setattr("kdbench.device.measure.prepare", broken)
    monkeypatch.setattr(precision, "_cpu_dtype_supported", lambda p: True)
    report = measure(Tiny(), torch.rand(64, 3, 8, 8), MeasureConfig(["fp32", "bf16"], **QUICK))
    m = {x.name: x for x in report.metrics()}
    assert "failed on cpu: NotImplementedError" in m["latency_p50_ms_bf16"].reason
    assert m["latency_p50_ms"].value is not None
    assert any("bf16" in note for note in report.notes)

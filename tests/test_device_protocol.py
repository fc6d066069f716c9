"""The device protocol end to end at smoke size, and ``kdbench device MODEL``."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from kdbench import plugins, runner
from kdbench.cli import app
from kdbench.device.figures import DEVICE_METRICS
from kdbench.device.profile import resolve_model
from kdbench.device.sensors import EnergySensor
from kdbench.hookspecs import hookimpl
from kdbench.protocols.base import ConfigError, load_protocol
from kdbench.record_files import load_record

FAST = {"device.threads": 1}


class SteadyMeter(EnergySensor):
    """A counter rising at 20 W: the arithmetic of energy per image, end to end."""

    name = "steady"
    devices = ("cpu",)
    update_period_s = 0.003  # windows of at least 0.3 s

    def available(self):
        return None

    def read_joules(self):
        return 20.0 * time.perf_counter()


class MeterPlugin:
    @hookimpl
    def kdbench_register_sensors(self, register):
        register(SteadyMeter, name="steady", description="20 W, steady")


def _run(tmp_path, methods, overrides=None, registry=None):
    registry = registry or plugins.get_registry()
    units, unsupported = runner.plan(
        registry,
        protocols=["device"],
        methods=methods,
        smoke=True,
        overrides={**FAST, **(overrides or {})},
    )
    report = runner.run_units(units, registry=registry, out=tmp_path, progress=False)
    return report, unsupported


def _machine(threads: int = 1) -> str:
    """The fingerprint id of this machine, as device records are filed under."""
    from kdbench.device.fingerprint import DeviceFingerprint

    return DeviceFingerprint("cpu", threads).id


@pytest.fixture
def no_world_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_WORLD_WEIGHTS", str(tmp_path / "no-weights"))


def test_teacher_and_student_rows_write_valid_records(no_world_weights, tmp_path):
    with plugins.temporary_plugin(MeterPlugin(), distribution="tests") as registry:
        report, unsupported = _run(
            tmp_path,
            ["teacher", "student", "kd", "scratch"],
            {"device.sensor": "steady", "device.precisions": ["fp32", "int8"]},
            registry,
        )
    assert not report.failed, [o.message for o in report.failed]
    reasons = {method: reason for _, method, reason in unsupported}
    assert "device measures architectures" in reasons["kd"] and "`student` row" in reasons["kd"]
    assert "distill" in reasons["scratch"]
    # records are named by the fingerprint of the machine they were measured on
    machine = _machine()
    teacher = load_record(tmp_path / f"embedded/device/{machine}/teacher-seed0.smoke.json")
    student = load_record(tmp_path / f"embedded/device/{machine}/student-seed0.smoke.json")
    assert teacher.device_fingerprint["id"] == machine
    assert teacher.components["subject"].name == "shapes-teacher"
    assert student.components["subject"].name == "shapes-student"
    assert student.components["subject"].options["pretrained"] is False
    assert any("random weights" in note for note in student.notes)
    assert student.components["sensor"].name == "steady"
    assert sorted(m.name for m in student.metrics) == sorted(m.name for m in DEVICE_METRICS)
    assert student.headline().name == "latency_p50_ms"
    for record in (teacher, student):
        m = {x.name: x for x in record.metrics}
        assert m["latency_p50_ms"].value > 0 and m["latency_p50_ms"].n >= 64
        assert m["latency_p90_ms"].value >= m["latency_p50_ms"].value
        assert m["latency_p99_ms"].value is None and "662" in m["latency_p99_ms"].reason
        assert m["throughput_ips"].value > 0 and m["peak_memory_mb"].value > 0
        assert m["gmacs"].value == pytest.approx(m["gflops"].value / 2)
        assert m["idle_power_w"].value == pytest.approx(20.0, rel=0.05)
        window = record.statistics["precisions"]["fp32"]["latency_window"]
        expected = 20.0 * window["seconds"] * 1000 / window["queries"]
        assert m["energy_mj_per_image"].value == pytest.approx(expected, rel=0.05)
        assert m["latency_p50_ms_int8"].value > 0
        assert "not in the configured precisions" in m["latency_p50_ms_bf16"].reason
        quantiles = record.statistics["precisions"]["fp32"]["latency_quantiles_ms"]
        assert len(quantiles) == 201
        assert quantiles[100] == pytest.approx(m["latency_p50_ms"].value, abs=1e-4)
        assert quantiles[180] == pytest.approx(m["latency_p90_ms"].value, abs=1e-4)
        iqr = (quantiles[150] - quantiles[50]) / quantiles[100]
        assert iqr == pytest.approx(m["latency_iqr_ratio"].value, rel=1e-2, abs=1e-3)
        fingerprint = record.device_fingerprint
        assert fingerprint["id"].startswith("cpu-") and fingerprint["identity"]["threads"] == 1
        assert set(fingerprint["state"]) == {"before", "after"}
        assert record.dataset.name == "shapes" and record.dataset.sizes == {"pool": 64}
    tm = {x.name: x.value for x in teacher.metrics}
    sm = {x.name: x.value for x in student.metrics}
    assert tm["params_m"] > 5 * sm["params_m"] and tm["gflops"] > 5 * sm["gflops"]
    assert teacher.device_fingerprint["id"] == student.device_fingerprint["id"]
    assert teacher.draws == student.draws  # the same seeded image pool


def test_without_a_sensor_energy_is_null_with_the_reason(no_world_weights, tmp_path):
    report, _ = _run(
        tmp_path, ["student"], {"device.sensor": "none", "device.precisions": ["fp32", "fp16"]}
    )
    assert not report.failed, [o.message for o in report.failed]
    record = load_record(tmp_path / f"embedded/device/{_machine()}/student-seed0.smoke.json")
    m = {x.name: x for x in record.metrics}
    for name in ("energy_mj_per_image", "energy_dynamic_mj_per_image", "idle_power_w"):
        assert m[name].value is None and "sensor=none" in m[name].reason
    fp16 = m["latency_p50_ms_fp16"]
    assert fp16.value is not None or fp16.reason.startswith("unsupported on cpu")


def test_ranked_runs_keep_the_spec_minimums():
    proto = load_protocol(plugins.get_registry().get("protocols", "device"))
    config = proto.config("embedded", smoke=False)
    assert config["latency"] == {"warmup": 10, "min_queries": 1000, "min_seconds": 10.0}
    assert config["precisions"] == ["fp32", "bf16", "fp16", "int8"]
    config["latency"]["min_queries"] = 100
    with pytest.raises(ConfigError, match="at least 1000"):
        proto._check(config, smoke=False)
    config = proto.config("embedded", smoke=False, overrides={"precisions": ["int8"]})
    with pytest.raises(ConfigError, match="include fp32"):
        proto._check(config, smoke=False)
    standard = proto.config("standard", smoke=False)
    assert standard["img_size"] == 224 and "dinov2" in standard["student"]["name"]


def test_cli_prints_the_same_figures(no_world_weights):
    result = CliRunner().invoke(
        app,
        ["device", "shapes-student", "--smoke", "--threads", "1", "--precision", "fp32,fp16",
         "--batch", "4", "--sensor", "none"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shapes-student at 32x32 on cpu, 1 thread(s), random weights" in result.output
    assert "GMACs" in result.output and "fp32" in result.output
    assert "energy: null (energy not measured" in result.output
    result = CliRunner().invoke(
        app, ["device", "shapes-student", "--smoke", "--threads", "1", "--precision", "fp32",
              "--batch", "4", "--json", "--sensor", "none"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    metrics = {m["name"]: m for m in data["metrics"]}
    assert metrics["latency_p50_ms"]["value"] > 0 and metrics["latency_p50_ms"]["unit"] == "ms"
    assert data["device_fingerprint"]["identity"]["threads"] == 1
    assert data["options"] == {"pretrained": False}
    assert any("random weights" in note for note in data["notes"])


def test_cli_resolves_timm_names_and_rejects_unknown_ones():
    registry = plugins.get_registry()
    assert resolve_model(registry, "shapes-teacher") == ("teachers", "shapes-teacher")
    assert resolve_model(registry, "mobilevit_xs") == ("students", "timm:mobilevit_xs")
    assert resolve_model(registry, "timm:vit_small_patch14_dinov2.lvd142m")[1] == (
        "timm:vit_small_patch14_dinov2.lvd142m"
    )
    result = CliRunner().invoke(app, ["device", "shapes-studnet", "--smoke"])
    assert result.exit_code == 2 and "error: unknown model 'shapes-studnet'" in result.output
    assert "shapes-student" in result.output


def test_cli_measures_a_timm_architecture_without_downloading():
    result = CliRunner().invoke(
        app,
        ["device", "vit_tiny_patch16_224", "--img-size", "32", "--smoke", "--threads", "1",
         "--precision", "fp32", "--batch", "2", "--sensor", "none"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "timm:vit_tiny_patch16_224 at 32x32" in result.output and "random weights" in result.output
    )


def test_open_clip_models_resolve_and_build_at_the_asked_size_with_random_weights():
    pytest.importorskip("open_clip")
    from kdbench.device.subject import load_backbone

    registry = plugins.get_registry()
    assert resolve_model(registry, "open_clip:ViT-B-32") == ("teachers", "open_clip:ViT-B-32")
    options = {"pretrained": False}  # what `kdbench device` passes without --weights
    spec = {"name": "open_clip:ViT-B-32", "options": options}
    backbone, used, _ = load_backbone(registry, "teachers", spec, 64, True)
    assert tuple(backbone.input_size) == (64, 64) and used["image_size"] == 64

"""Device fingerprints from fake /proc and /sys trees and a stub NVML."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from kdbench.device import fingerprint as fp
from kdbench.device.fingerprint import DeviceFingerprint, decode_throttle_reasons

CPUINFO = """processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu vme de pse tsc msr avx512f avx512_bf16 amx_bf16 hypervisor

processor	: 1
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8480+
"""


def _machine(
    tmp_path: Path, governor: str = "performance", load: str = "0.52"
) -> tuple[Path, Path]:
    proc, sys_cpu = tmp_path / "proc", tmp_path / "sys" / "devices" / "system" / "cpu"
    proc.mkdir(parents=True)
    (proc / "cpuinfo").write_text(CPUINFO)
    (proc / "meminfo").write_text("MemTotal:       131891804 kB\nMemFree: 1 kB\n")
    (proc / "loadavg").write_text(f"{load} 0.40 0.30 1/200 1234\n")
    for cpu in fp.available_cpus():
        freq = sys_cpu / f"cpu{cpu}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_governor").write_text(f"{governor}\n")
        (freq / "scaling_cur_freq").write_text("2000000\n")
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{cpu // 2}\n")  # two hyper-threads per core
    (sys_cpu / "intel_pstate").mkdir()
    (sys_cpu / "intel_pstate" / "no_turbo").write_text("0\n")
    return proc, sys_cpu


def _fingerprint(tmp_path, **kwargs):
    proc, sys_cpu = _machine(tmp_path, **kwargs)
    return DeviceFingerprint("cpu", 4, proc=proc, sys_cpu=sys_cpu, root=tmp_path / "root")


def test_cpu_identity_from_proc_and_sys(tmp_path):
    f = _fingerprint(tmp_path)
    i = f.identity
    assert i["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert i["cpu_vendor"] == "GenuineIntel" and i["virtualised"] is True
    assert i["governor"] == "performance" and i["turbo"] is True
    assert i["memory_gib"] == 126 and i["threads"] == 4
    assert i["physical_cores_available"] == (len(fp.available_cpus()) + 1) // 2
    assert f.snapshot() == {"cpu_mhz_mean": 2000, "load_average_1m": 0.52}
    d = f.as_dict(f.snapshot(), f.snapshot())
    assert set(d) == {"id", "summary", "kind", "identity", "state"}
    assert d["id"].startswith("cpu-") and len(d["id"]) == 4 + 16
    assert "Platinum 8480+, 4 thread(s), governor performance" in d["summary"]


def test_the_id_hashes_identity_only(tmp_path):
    a = _fingerprint(tmp_path / "a", load="0.10")
    b = _fingerprint(tmp_path / "b", load="7.90")
    assert a.snapshot() != b.snapshot() and a.id == b.id  # load is state, not identity
    c = _fingerprint(tmp_path / "c", governor="powersave")
    assert c.id != a.id
    assert set(c.identity) == set(a.identity)  # stable keys


def test_unreadable_fields_are_null_not_missing(tmp_path):
    empty = tmp_path / "empty"
    f = DeviceFingerprint("cpu", 1, proc=empty, sys_cpu=empty, root=empty)
    assert f.identity["governor"] is None and f.identity["turbo"] is None
    assert f.snapshot() == {"cpu_mhz_mean": None, "load_average_1m": None}


def test_jetson_power_mode(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64\n"
    )
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "proc" / "device-tree" / "model").write_text(
        "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit\x00"
    )
    (root / "var" / "lib" / "nvpmodel").mkdir(parents=True)
    (root / "var" / "lib" / "nvpmodel" / "status").write_text("pmode:0001 fmode:quiet\n")
    identity = fp.jetson_identity(root)
    assert identity["jetson_model"].startswith("NVIDIA Jetson Orin Nano")
    assert identity["power_mode"] == "0001" and identity["l4t_release"].startswith("# R36")
    proc, sys_cpu = _machine(tmp_path)
    f = DeviceFingerprint("cpu", 2, proc=proc, sys_cpu=sys_cpu, root=root)
    assert f.kind == "jetson-cpu" and f.id.startswith("jetson-cpu-")
    assert "power mode 0001" in f.summary()
    assert fp.jetson_identity(tmp_path / "nothing") is None


def _stub_nvml(sm_clock=1980, reasons=0x4 | 0x40):
    nvml = types.SimpleNamespace(NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0)
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nvml.nvmlDeviceGetHandleByUUID = lambda u: "h-uuid"
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    nvml.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700000
    nvml.nvmlDeviceGetMaxClockInfo = lambda h, c: {1: 1980, 2: 2619}[c]
    nvml.nvmlDeviceGetApplicationsClock = lambda h, c: {1: 1755, 2: 2619}[c]
    nvml.nvmlDeviceGetPersistenceMode = lambda h: 1
    nvml.nvmlDeviceGetClockInfo = lambda h, c: {1: sm_clock, 2: 2619}[c]
    nvml.nvmlDeviceGetTemperature = lambda h, s: 41
    nvml.nvmlDeviceGetPowerUsage = lambda h: 123456
    nvml.nvmlDeviceGetPerformanceState = lambda h: 0
    nvml.nvmlDeviceGetCurrentClocksEventReasons = lambda h: reasons
    return nvml


def test_gpu_identity_and_state_from_nvml(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    proc, sys_cpu = _machine(tmp_path)
    make = lambda nvml: DeviceFingerprint(  # noqa: E731
        "cuda:0", 8, proc=proc, sys_cpu=sys_cpu, root=tmp_path / "root", nvml=nvml
    )
    f = make(_stub_nvml())
    i = f.identity
    assert i["gpu_name"] == "NVIDIA H100 80GB HBM3" and i["driver"] == "550.54.15"
    assert i["power_limit_w"] == 700 and i["max_sm_clock_mhz"] == 1980
    assert i["application_sm_clock_mhz"] == 1755 and i["persistence_mode"] is True
    state = f.snapshot()
    assert state["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert state["power_w"] == pytest.approx(123.456) and state["temperature_c"] == 41
    assert f.kind == "cuda" and "700 W limit" in f.summary()
    throttled = make(_stub_nvml(sm_clock=900, reasons=0x20))
    assert throttled.id == f.id  # clocks and throttling now are state, not identity


def test_throttle_reason_bits():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1 | 0x1000) == ["gpu_idle", "0x1000"]
    assert decode_throttle_reasons(None) is None

"""The device a latency or energy figure is tied to.

A fingerprint has stable ``identity`` fields (what the hardware and software stack are:
CPU model and governor, GPU name, driver, clock limits, power limit, Jetson power mode,
threads, torch version) and volatile ``state`` readings taken before and after the
measurement (current clocks, temperature, throttle reasons, load). ``id`` is a hash of the
identity only, so two runs on the same configured machine share it and the leaderboard
compares latency and energy only between records with the same ``id``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kdbench.device.sensors.nvml import cuda_index, load_nvml, nvml_handle, text
from kdbench.device.threads import available_cpus, physical_cores_available

THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return None


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception:
        return None


def fingerprint_id(kind: str, identity: dict[str, Any]) -> str:
    """``<kind>-<16 hex>``: sha256 of the canonical JSON of the identity fields."""
    text_ = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"{kind}-{hashlib.sha256(text_.encode()).hexdigest()[:16]}"


# -- CPU ----------------------------------------------------------------------------------


def parse_cpuinfo(text_: str) -> dict[str, Any]:
    """Model name, vendor and whether a hypervisor flag is set, from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text_.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:
            fields[key] = value.strip()
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu model")
    flags = (fields.get("flags") or fields.get("features") or "").split()
    return {
        "model": model,
        "vendor": fields.get("vendor_id") or fields.get("cpu implementer"),
        "hypervisor": "hypervisor" in flags,
    }


def cpu_identity(
    threads: int, proc: Path = Path("/proc"), sys_cpu: Path = Path("/sys/devices/system/cpu")
) -> dict[str, Any]:
    """Stable CPU fields; unreadable ones are ``None`` (keys are always present)."""
    info = parse_cpuinfo(_read(proc / "cpuinfo") or "")
    cpus = available_cpus()
    governors = sorted(
        {g for c in cpus if (g := _read(sys_cpu / f"cpu{c}" / "cpufreq" / "scaling_governor"))}
    )
    boost = _read(sys_cpu / "cpufreq" / "boost")
    no_turbo = _read(sys_cpu / "intel_pstate" / "no_turbo")
    turbo = boost == "1" if boost is not None else (no_turbo == "0" if no_turbo else None)
    meminfo = _read(proc / "meminfo") or ""
    mem_kib = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")),
        None,
    )
    return {
        "cpu_model": info["model"] or platform.processor() or None,
        "cpu_vendor": info["vendor"],
        "arch": platform.machine(),
        "virtualised": info["hypervisor"],
        "logical_cpus_available": len(cpus),
        "physical_cores_available": physical_cores_available(sys_cpu),
        "governor": ",".join(governors) if governors else None,
        "turbo": turbo,
        "memory_gib": round(mem_kib / 2**20) if mem_kib else None,
        "torch_cpu_capability": _try(torch.backends.cpu.get_cpu_capability),
        "threads": threads,
    }


def cpu_state(proc: Path = Path("/proc"), sys_cpu: Path = Path("/sys/devices/system/cpu")) -> dict:
    freqs = [
        int(f)
        for c in available_cpus()
        if (f := _read(sys_cpu / f"cpu{c}" / "cpufreq" / "scaling_cur_freq")) and f.isdigit()
    ]
    load = _read(proc / "loadavg")
    return {
        "cpu_mhz_mean": round(sum(freqs) / len(freqs) / 1000) if freqs else None,
        "load_average_1m": float(load.split()[0]) if load else None,
    }


# -- NVIDIA GPU ---------------------------------------------------------------------------


def decode_throttle_reasons(mask: int | None) -> list[str] | None:
    if mask is None:
        return None
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    return names + ([f"0x{unknown:x}"] if unknown else [])


def gpu_identity(device: str, nvml: Any = None) -> dict[str, Any]:
    """Stable GPU fields from torch and NVML (``None`` where NVML cannot tell)."""
    index = cuda_index(device)
    props = _try(lambda: torch.cuda.get_device_properties(index))
    out: dict[str, Any] = {
        "gpu_name": getattr(props, "name", None),
        "compute_capability": f"{props.major}.{props.minor}" if props is not None else None,
        "gpu_memory_mib": props.total_memory // 2**20 if props is not None else None,
        "cuda_runtime": torch.version.cuda,
        "cudnn": _try(torch.backends.cudnn.version),
        "driver": None,
        "power_limit_w": None,
        "max_sm_clock_mhz": None,
        "max_mem_clock_mhz": None,
        "application_sm_clock_mhz": None,
        "application_mem_clock_mhz": None,
        "persistence_mode": None,
    }
    nvml = nvml or _try(load_nvml)
    handle = _try(lambda: nvml_handle(nvml, index)) if nvml is not None else None
    if handle is None:
        return out
    clock_sm, clock_mem = getattr(nvml, "NVML_CLOCK_SM", 1), getattr(nvml, "NVML_CLOCK_MEM", 2)
    out.update(
        gpu_name=out["gpu_name"] or _try(lambda: text(nvml.nvmlDeviceGetName(handle))),
        driver=_try(lambda: text(nvml.nvmlSystemGetDriverVersion())),
        power_limit_w=_try(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000),
        max_sm_clock_mhz=_try(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, clock_sm)),
        max_mem_clock_mhz=_try(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, clock_mem)),
        application_sm_clock_mhz=_try(
            lambda: nvml.nvmlDeviceGetApplicationsClock(handle, clock_sm)
        ),
        application_mem_clock_mhz=_try(
            lambda: nvml.nvmlDeviceGetApplicationsClock(handle, clock_mem)
        ),
        persistence_mode=_try(lambda: bool(nvml.nvmlDeviceGetPersistenceMode(handle))),
    )
    return out


def gpu_state(device: str, nvml: Any = None) -> dict[str, Any]:
    """Current clocks, temperature, power draw, performance state and throttle reasons."""
    nvml = nvml or _try(load_nvml)
    handle = _try(lambda: nvml_handle(nvml, cuda_index(device))) if nvml is not None else None
    if handle is None:
        return {"nvml": "unavailable"}
    clock_sm, clock_mem = getattr(nvml, "NVML_CLOCK_SM", 1), getattr(nvml, "NVML_CLOCK_MEM", 2)
    reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    return {
        "sm_clock_mhz": _try(lambda: nvml.nvmlDeviceGetClockInfo(handle, clock_sm)),
        "mem_clock_mhz": _try(lambda: nvml.nvmlDeviceGetClockInfo(handle, clock_mem)),
        "temperature_c": _try(
            lambda: nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
        ),
        "power_w": _try(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000),
        "pstate": _try(lambda: nvml.nvmlDeviceGetPerformanceState(handle)),
        "throttle_reasons": decode_throttle_reasons(
            _try(lambda: reasons(handle)) if reasons else None
        ),
    }


# -- Jetson -------------------------------------------------------------------------------


def jetson_identity(root: Path = Path("/")) -> dict[str, Any] | None:
    """Jetson model, L4T release and nvpmodel power mode; ``None`` off a Jetson."""
    release = _read(root / "etc" / "nv_tegra_release")
    model = _read(root / "proc" / "device-tree" / "model")
    if release is None and not (model and "jetson" in model.lower()):
        return None
    mode = None
    status = _read(root / "var" / "lib" / "nvpmodel" / "status")
    if status and "pmode:" in status:
        mode = status.split("pmode:", 1)[1].split()[0]
    mode_name = None
    if root == Path("/") and shutil.which("nvpmodel"):
        query = _try(
            lambda: (
                subprocess.run(
                    ["nvpmodel", "-q"], capture_output=True, text=True, timeout=5, check=False
                ).stdout
            )
        )
        for line in (query or "").splitlines():
            if line.startswith("NV Power Mode:"):
                mode_name = line.split(":", 1)[1].strip()
    return {
        "jetson_model": model,
        "l4t_release": release.splitlines()[0] if release else None,
        "power_mode": mode,
        "power_mode_name": mode_name,
    }


# -- the fingerprint ----------------------------------------------------------------------


class DeviceFingerprint:
    """Identity of ``device`` now, and :meth:`snapshot` for its volatile state."""

    def __init__(
        self,
        device: str,
        threads: int,
        proc: Path = Path("/proc"),
        sys_cpu: Path = Path("/sys/devices/system/cpu"),
        root: Path = Path("/"),
        nvml: Any = None,
    ) -> None:
        self.device = device
        self.kind = device.partition(":")[0]
        self.proc, self.sys_cpu, self.nvml = proc, sys_cpu, nvml
        identity: dict[str, Any] = {"device": self.kind, "torch": torch.__version__.split("+")[0]}
        identity.update(cpu_identity(threads, proc, sys_cpu))
        if self.kind == "cuda":
            identity.update(gpu_identity(device, nvml))
        jetson = jetson_identity(root)
        if jetson is not None:
            identity.update(jetson)
            self.kind = f"jetson-{self.kind}"
        self.identity = identity

    def snapshot(self) -> dict[str, Any]:
        state = cpu_state(self.proc, self.sys_cpu)
        if self.device.startswith("cuda"):
            state.update(gpu_state(self.device, self.nvml))
        return state

    @property
    def id(self) -> str:
        return fingerprint_id(self.kind, self.identity)

    def summary(self) -> str:
        i = self.identity
        parts = []
        if "jetson_model" in i:
            parts.append(
                f"{i['jetson_model']} (power mode {i['power_mode_name'] or i['power_mode']})"
            )
        if i.get("gpu_name"):
            gpu = i["gpu_name"]
            if i.get("driver"):
                gpu += f", driver {i['driver']}"
            if i.get("power_limit_w"):
                gpu += f", {i['power_limit_w']:.0f} W limit"
            parts.append(gpu)
        cpu = f"{i['cpu_model'] or 'unknown CPU'}, {i['threads']} thread(s)"
        if i.get("governor"):
            cpu += f", governor {i['governor']}"
        parts.append(cpu)
        parts.append(f"torch {i['torch']}")
        return " · ".join(parts)

    def as_dict(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """What goes into ``UnitResult.device_fingerprint``."""
        return {
            "id": self.id,
            "summary": self.summary(),
            "kind": self.kind,
            "identity": dict(self.identity),
            "state": {"before": before, "after": after},
        }


def default_threads() -> int:
    """Threads a measurement uses unless told: the physical cores this process may use."""
    return physical_cores_available()

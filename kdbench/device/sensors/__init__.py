"""Energy sensors (a plugin kind) and how the device protocol picks one.

Built-ins: ``nvml`` (NVIDIA GPUs), ``rapl`` (Intel/AMD CPU packages), ``jetson`` (Jetson
board supply). ``select_sensor`` with ``"auto"`` tries the built-ins that meter the device
(jetson first: it measures at the supply), then plugin sensors by name; the first that can
be read wins, and when none can, the reasons of all of them are returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdbench.device.sensors.base import EnergySensor, SensorError, read_sysfs
from kdbench.registry import Component, Registry

__all__ = ["EnergySensor", "SensorChoice", "SensorError", "read_sysfs", "select_sensor"]

BUILTIN_ORDER = ("jetson", "nvml", "rapl")


@dataclass
class SensorChoice:
    """The sensor to use (or ``None``) and, when there is none, why."""

    sensor: EnergySensor | None
    component: Component | None
    reason: str | None


def _device_type(device: str) -> str:
    return device.partition(":")[0]


def select_sensor(registry: Registry, wanted: str | None, device: str) -> SensorChoice:
    """The sensor named ``wanted`` (``"auto"``: the first readable one; ``None``/``"none"``:
    no sensor) for work on ``device``."""
    if wanted in (None, "none"):
        return SensorChoice(None, None, "energy not measured: the config sets sensor=none")
    if wanted != "auto":
        component = registry.get("sensors", wanted)
        sensor = component.load()(device=device)
        reason = sensor.available()
        return SensorChoice(None if reason else sensor, component, reason)
    names = registry.names("sensors")
    order = [n for n in BUILTIN_ORDER if n in names] + [n for n in names if n not in BUILTIN_ORDER]
    reasons = []
    for name in order:
        component = registry.get("sensors", name)
        factory = component.load()
        covers = getattr(factory, "devices", None)
        if covers is not None and _device_type(device) not in covers:
            continue
        try:
            sensor = factory(device=device)
            reason = sensor.available()
        except Exception as error:  # a broken plugin sensor must not stop the measurement
            reason = f"{name}: {type(error).__name__}: {error}"
        if reason is None:
            return SensorChoice(sensor, component, None)
        reasons.append(reason)
    if not reasons:
        return SensorChoice(None, None, f"no energy sensor is registered for {device}")
    return SensorChoice(
        None, None, f"no energy counter can be read on {device}: " + "; ".join(reasons)
    )

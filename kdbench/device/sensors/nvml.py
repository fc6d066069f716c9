"""NVIDIA GPU energy from NVML's total energy counter (Volta and newer).

``nvmlDeviceGetTotalEnergyConsumption`` is the board's energy in millijoules since the
driver was loaded (a 64-bit counter: it does not wrap in practice). It comes from the
``nvidia-ml-py`` package (module ``pynvml``); the old ``pynvml`` distribution is deprecated.
"""

from __future__ import annotations

import os
from typing import Any

from kdbench.device.sensors.base import EnergySensor, SensorError


def load_nvml() -> Any:
    """The ``pynvml`` module of ``nvidia-ml-py``, initialised (raises ImportError or NVMLError)."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def cuda_index(device: str) -> int:
    """``"cuda:1"`` -> 1, ``"cuda"`` -> 0."""
    _, _, index = device.partition(":")
    return int(index) if index else 0


def nvml_handle(nvml: Any, index: int) -> Any:
    """The NVML handle of torch's ``cuda:<index>``.

    NVML numbers every GPU of the machine while torch numbers the visible ones, so match by
    UUID when torch can tell it, else through ``CUDA_VISIBLE_DEVICES``.
    """
    try:
        import torch

        if torch.cuda.is_available():
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return nvml.nvmlDeviceGetHandleByUUID(
                uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
            )
    except Exception:  # an older torch without .uuid, or a UUID NVML does not know
        pass
    visible = [
        v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()
    ]
    if index < len(visible):
        entry = visible[index]
        if entry.isdigit():
            return nvml.nvmlDeviceGetHandleByIndex(int(entry))
        return nvml.nvmlDeviceGetHandleByUUID(entry)
    return nvml.nvmlDeviceGetHandleByIndex(index)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSensor(EnergySensor):
    """NVIDIA GPU board energy from ``nvmlDeviceGetTotalEnergyConsumption`` (mJ counter)."""

    name = "nvml"
    devices = ("cuda",)
    update_period_s = 0.1  # conservative: the counter advances in steps of tens of ms

    def __init__(self, device: str = "cuda:0") -> None:
        super().__init__(device)
        self._nvml: Any = None
        self._handle: Any = None

    def available(self) -> str | None:
        if not self.device.startswith("cuda"):
            return f"nvml: meters NVIDIA GPUs, and the device is {self.device}"
        try:
            nvml = load_nvml()
        except ImportError:
            return "nvml: the nvidia-ml-py package is not installed (pip install nvidia-ml-py)"
        except Exception as error:  # NVMLError: no driver, no GPU
            return f"nvml: NVML did not start ({error}); is the NVIDIA driver loaded?"
        try:
            handle = nvml_handle(nvml, cuda_index(self.device))
            name = text(nvml.nvmlDeviceGetName(handle))
        except Exception as error:
            return f"nvml: no NVML device for {self.device}: {error}"
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as error:
            if type(error).__name__ == "NVMLError_NotSupported":
                return (
                    f"nvml: {name} has no total energy counter (it needs a Volta or newer "
                    "GPU; on a Jetson use the jetson sensor)"
                )
            return f"nvml: cannot read the energy counter of {name}: {error}"
        self._nvml, self._handle = nvml, handle
        self.domain = f"GPU {cuda_index(self.device)} board ({name})"
        return None

    def read_joules(self) -> float:
        if self._handle is None:
            reason = self.available()
            if reason:
                raise SensorError(reason)
        try:
            millijoules = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as error:
            raise SensorError(f"nvml: the energy counter stopped answering: {error}") from None
        return float(millijoules) / 1000.0

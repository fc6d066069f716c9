"""The contract of an energy sensor: a cumulative hardware counter read at window edges.

A sensor plugin registers a class (or a factory) through ``kdbench_register_sensors``;
kdbench calls it as ``factory(device="cpu" | "cuda:0" | ...)`` and then uses only what
:class:`EnergySensor` declares. Energy per image is the counter difference over a timed
window divided by the images run in it; readings are never estimated from a rated power.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar


class SensorError(RuntimeError):
    """A sensor that was available stopped answering during a measurement."""


class EnergySensor(ABC):
    """A cumulative energy counter.

    ``name``
        the registered name (``rapl``, ``nvml``, ``jetson``...).
    ``devices``
        torch device types whose work the sensor meters (``"cpu"``, ``"cuda"``).
    ``update_period_s``
        how often the underlying counter advances; a measurement window lasts at least
        100 times this.
    ``domain``
        what is metered, in words (``"CPU package-0"``, ``"GPU 0 (whole board)"``...).

    ``available()`` returns ``None`` when the counter can be read, else one line saying why
    not and how to fix it. ``read_joules()`` returns joules since an arbitrary origin,
    non-decreasing: counter wrap-around is the sensor's job. ``start()``/``stop()`` bracket a
    measurement, for sensors that must sample in the background.
    """

    name: ClassVar[str] = "sensor"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    update_period_s: float = 0.001
    domain: str = ""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    @abstractmethod
    def available(self) -> str | None:
        """``None`` if :meth:`read_joules` will work, else why it cannot (with the fix)."""

    @abstractmethod
    def read_joules(self) -> float:
        """Cumulative energy in joules since an arbitrary origin (wrap-around handled)."""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Begin a measurement (background sampling, if the sensor needs it)."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """End a measurement."""

    def describe(self) -> dict[str, Any]:
        """What goes into the record about this sensor."""
        return {"name": self.name, "domain": self.domain, "update_period_s": self.update_period_s}


def read_sysfs(path: Path) -> str:
    """The stripped text of a sysfs file (one place, so tests can fake permission errors)."""
    return Path(path).read_text().strip()


def unreadable(path: Path, error: OSError) -> str:
    """A one-line reason for a sysfs file that cannot be read."""
    if isinstance(error, PermissionError):
        return f"no permission to read {path} (run as root or grant read access to it)"
    return f"cannot read {path}: {error.strerror or error}"

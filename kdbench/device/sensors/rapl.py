"""Intel and AMD CPU package energy through the Linux powercap RAPL files.

Each package zone ``/sys/class/powercap/intel-rapl:<n>`` (name ``package-<n>``; AMD Zen
CPUs use the same interface) has ``energy_uj``, a microjoule counter that wraps to zero
after ``max_energy_range_uj``. Sub-zones (core, uncore, dram) are inside the package and
are not added again; ``psys`` and the ``intel-rapl-mmio`` duplicates are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdbench.device.sensors.base import EnergySensor, SensorError, read_sysfs, unreadable

ROOT = Path("/sys/class/powercap")
_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")
PERMISSION_HINT = (
    "since Linux 5.10 the RAPL counters are readable by root only; run as root, or grant "
    "read access until the next reboot with `sudo chmod o+r {root}/intel-rapl:*/energy_uj`"
)


class RaplSensor(EnergySensor):
    """CPU package energy from RAPL (``energy_uj``, wrap-around at ``max_energy_range_uj``)."""

    name = "rapl"
    devices = ("cpu",)
    update_period_s = 0.001  # the energy status registers update about every millisecond

    def __init__(self, device: str = "cpu", root: str | Path | None = None) -> None:
        super().__init__(device)
        self.root = Path(root) if root is not None else ROOT
        self._zones: list[tuple[str, Path, int]] = []
        self._last: dict[Path, int] = {}
        self._total_uj = 0

    def _find_zones(self) -> list[tuple[str, Path, int]]:
        zones = []
        for folder in sorted(self.root.glob("intel-rapl:*")):
            if not _PACKAGE_ZONE.match(folder.name):
                continue
            try:
                label = read_sysfs(folder / "name")
            except OSError:
                label = folder.name
            if not label.startswith("package"):
                continue  # psys (platform) overlaps the packages
            energy = folder / "energy_uj"
            try:
                max_range = int(read_sysfs(folder / "max_energy_range_uj"))
                read_sysfs(energy)
            except PermissionError as error:
                raise PermissionError(
                    f"{unreadable(Path(error.filename or energy), error)}: "
                    + PERMISSION_HINT.format(root=self.root)
                ) from None
            zones.append((label, energy, max_range))
        return zones

    def available(self) -> str | None:
        if not self.root.is_dir():
            return (
                f"rapl: no {self.root} (this kernel exposes no powercap interface; usual in "
                "virtual machines and containers)"
            )
        try:
            zones = self._find_zones()
        except PermissionError as error:
            return f"rapl: {error}"
        except (OSError, ValueError) as error:
            return f"rapl: cannot read the RAPL zones under {self.root}: {error}"
        if not zones:
            return (
                f"rapl: no RAPL package zone under {self.root} (the intel_rapl or amd rapl "
                "driver is not loaded, or this CPU has no RAPL)"
            )
        self._zones = zones
        self.domain = "CPU " + " + ".join(label for label, _, _ in zones)
        return None

    def read_joules(self) -> float:
        if not self._zones:
            reason = self.available()
            if reason:
                raise SensorError(reason)
        for _, path, max_range in self._zones:
            try:
                raw = int(read_sysfs(path))
            except (OSError, ValueError) as error:
                raise SensorError(f"rapl: {path} stopped answering: {error}") from None
            last = self._last.get(path)
            if last is not None:
                delta = raw - last
                if delta < 0:  # the counter wrapped past max_energy_range_uj
                    delta += max_range
                self._total_uj += delta
            self._last[path] = raw
        return self._total_uj / 1e6

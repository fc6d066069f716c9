"""NVIDIA Jetson board power at the supply: the INA3221 ``VDD_IN`` rail.

On Jetson Orin (L4T 35 and newer) the INA3221 monitor is a hwmon device under
``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/``: channel ``k`` has ``in<k>_label``,
``in<k>_input`` (bus voltage, mV) and ``curr<k>_input`` (current, mA). It gives power, not
energy, so this sensor samples it in a background thread and integrates (trapezoids) into
a cumulative joule counter. NVML reports no energy on Jetson.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from kdbench.device.sensors.base import EnergySensor, SensorError, read_sysfs, unreadable

ROOT = Path("/sys/bus/i2c/drivers/ina3221")
DEFAULT_POLL_S = 0.01


class JetsonSensor(EnergySensor):
    """Jetson board energy from the INA3221 ``VDD_IN`` rail (sampled and integrated)."""

    name = "jetson"
    devices = ("cpu", "cuda")

    def __init__(
        self,
        device: str = "cpu",
        root: str | Path | None = None,
        rail: str = "VDD_IN",
        poll_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(device)
        self.root = Path(root) if root is not None else ROOT
        self.rail = rail
        self.poll_s = poll_s
        self.update_period_s = poll_s or DEFAULT_POLL_S
        self.domain = f"board supply ({rail})"
        self.clock = clock
        self._voltage: Path | None = None
        self._current: Path | None = None
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None  # (time s, power W)
        self._joules = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _find_rail(self) -> tuple[Path, Path, Path] | list[str]:
        labels = []
        for label_file in sorted(self.root.glob("*/hwmon/hwmon*/in*_label")):
            label = read_sysfs(label_file)
            labels.append(label)
            if label == self.rail:
                channel = label_file.name.removeprefix("in").removesuffix("_label")
                folder = label_file.parent
                return folder, folder / f"in{channel}_input", folder / f"curr{channel}_input"
        return labels

    def available(self) -> str | None:
        if not self.root.is_dir():
            return f"jetson: no {self.root} (not a Jetson, or the ina3221 driver is not loaded)"
        try:
            found = self._find_rail()
        except OSError as error:
            return f"jetson: {unreadable(Path(error.filename or self.root), error)}"
        if isinstance(found, list):
            shown = ", ".join(found) if found else "none"
            return (
                f"jetson: no INA3221 channel labelled {self.rail} under {self.root} "
                f"(labels: {shown})"
            )
        folder, voltage, current = found
        for path in (voltage, current):
            try:
                float(read_sysfs(path))
            except OSError as error:
                return f"jetson: {unreadable(path, error)}"
            except ValueError:
                return f"jetson: {path} does not hold a number"
        self._voltage, self._current = voltage, current
        if self.poll_s is None:
            try:  # the monitor's own conversion interval, in ms
                interval = float(read_sysfs(folder / "update_interval")) / 1000
                self.update_period_s = max(DEFAULT_POLL_S, interval)
            except (OSError, ValueError):
                pass
        return None

    def power_watts(self) -> float:
        """The rail's power now: mV x mA = µW."""
        if self._voltage is None or self._current is None:
            reason = self.available()
            if reason:
                raise SensorError(reason)
        assert self._voltage is not None and self._current is not None
        try:
            millivolts = float(read_sysfs(self._voltage))
            milliamps = float(read_sysfs(self._current))
        except (OSError, ValueError) as error:
            raise SensorError(f"jetson: the {self.rail} rail stopped answering: {error}") from None
        return millivolts * milliamps / 1e6

    def sample(self) -> float:
        """Read the power once and add the trapezoid since the last sample; joules so far."""
        power = self.power_watts()
        now = self.clock()
        with self._lock:
            if self._last is not None:
                last_time, last_power = self._last
                self._joules += 0.5 * (power + last_power) * max(0.0, now - last_time)
            self._last = (now, power)
            return self._joules

    def read_joules(self) -> float:
        return self.sample()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.sample()

        def loop() -> None:
            while not self._stop.wait(self.update_period_s):
                try:
                    self.sample()
                except SensorError:
                    return

        self._thread = threading.Thread(target=loop, name="kdbench-jetson-sensor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

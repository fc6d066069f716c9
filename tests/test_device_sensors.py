"""Energy sensors against fake sysfs trees (RAPL, Jetson INA3221) and a stub NVML module,
and how the device protocol picks a sensor."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from kdbench import plugins
from kdbench.device.sensors import EnergySensor, SensorError, base, select_sensor
from kdbench.device.sensors.jetson import JetsonSensor
from kdbench.device.sensors.nvml import NvmlSensor
from kdbench.device.sensors.rapl import RaplSensor
from kdbench.hookspecs import hookimpl

# -- RAPL -------------------------------------------------------------------------------

RAPL_MAX = 262143328850  # max_energy_range_uj of a real Intel package zone


def _zone(root: Path, name: str, label: str, energy: int, max_range: int = RAPL_MAX) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "name").write_text(f"{label}\n")
    (folder / "energy_uj").write_text(f"{energy}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_range}\n")
    (folder / "enabled").write_text("1\n")
    return folder


@pytest.fixture
def rapl_tree(tmp_path):
    """Two packages with core/dram sub-zones, a psys zone and an MMIO duplicate."""
    root = tmp_path / "powercap"
    _zone(root, "intel-rapl:0", "package-0", 1_000_000)
    _zone(root, "intel-rapl:0:0", "core", 400_000)
    _zone(root, "intel-rapl:0:1", "dram", 90_000, 65532610987)
    _zone(root, "intel-rapl:1", "package-1", 2_000_000)
    _zone(root, "intel-rapl:2", "psys", 9_000_000)
    _zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    return root


def _set(root: Path, zone: str, energy: int) -> None:
    (root / zone / "energy_uj").write_text(f"{energy}\n")


def test_rapl_adds_package_zones_only(rapl_tree):
    sensor = RaplSensor(root=rapl_tree)
    assert sensor.available() is None
    assert sensor.domain == "CPU package-0 + package-1"
    assert sensor.read_joules() == 0.0  # the first reading is the origin
    _set(rapl_tree, "intel-rapl:0", 1_500_000)
    _set(rapl_tree, "intel-rapl:1", 2_250_000)
    _set(rapl_tree, "intel-rapl:0:0", 900_000)  # inside package-0: not added again
    _set(rapl_tree, "intel-rapl:2", 99_000_000)  # psys overlaps the packages
    _set(rapl_tree, "intel-rapl-mmio:0", 9_000_000)
    assert sensor.read_joules() == pytest.approx(0.75)


def test_rapl_handles_wrap_around(rapl_tree):
    sensor = RaplSensor(root=rapl_tree)
    assert sensor.available() is None
    _set(rapl_tree, "intel-rapl:0", RAPL_MAX - 300_000)
    sensor.read_joules()
    start = sensor.read_joules()
    _set(rapl_tree, "intel-rapl:0", 200_000)  # wrapped: 300_000 to the top, then 200_000
    assert sensor.read_joules() - start == pytest.approx(0.5)
    _set(rapl_tree, "intel-rapl:0", 1_200_000)
    assert sensor.read_joules() - start == pytest.approx(1.5)


def test_rapl_explains_permission_errors(rapl_tree, monkeypatch):
    real = base.read_sysfs

    def denied(path):
        if Path(path).name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr("kdbench.device.sensors.rapl.read_sysfs", denied)
    reason = RaplSensor(root=rapl_tree).available()
    assert "no permission to read" in reason and "intel-rapl:0/energy_uj" in reason
    assert "root only" in reason and "chmod o+r" in reason


def test_rapl_says_when_there_is_nothing_to_read(tmp_path):
    assert "no powercap interface" in RaplSensor(root=tmp_path / "missing").available()
    root = tmp_path / "powercap"
    _zone(root, "intel-rapl:0", "psys", 5)
    assert "no RAPL package zone" in RaplSensor(root=root).available()
    with pytest.raises(SensorError, match="no RAPL package zone"):
        RaplSensor(root=root).read_joules()


# -- Jetson INA3221 -----------------------------------------------------------------------


@pytest.fixture
def ina3221_tree(tmp_path):
    """An Orin-style INA3221 hwmon folder: VDD_IN on channel 1."""
    root = tmp_path / "ina3221"
    hwmon = root / "1-0040" / "hwmon" / "hwmon3"
    hwmon.mkdir(parents=True)
    for channel, label, mv, ma in ((1, "VDD_IN", 5000, 1000), (2, "VDD_CPU_GPU_CV", 5000, 200),
                                   (3, "VDD_SOC", 5000, 300)):  # fmt: skip
        (hwmon / f"in{channel}_label").write_text(f"{label}\n")
        (hwmon / f"in{channel}_input").write_text(f"{mv}\n")
        (hwmon / f"curr{channel}_input").write_text(f"{ma}\n")
        (hwmon / f"curr{channel}_max").write_text("20000\n")
    (hwmon / "update_interval").write_text("20\n")
    (hwmon / "name").write_text("ina3221\n")
    return root, hwmon


def test_jetson_integrates_vdd_in_power(ina3221_tree):
    root, hwmon = ina3221_tree
    now = [100.0]
    sensor = JetsonSensor(root=root, clock=lambda: now[0])
    assert sensor.available() is None
    assert sensor.update_period_s == pytest.approx(0.02)  # the monitor's update_interval
    assert sensor.domain == "board supply (VDD_IN)"
    assert sensor.power_watts() == pytest.approx(5.0)  # 5000 mV x 1000 mA
    start = sensor.read_joules()
    now[0] += 1.0
    assert sensor.read_joules() - start == pytest.approx(5.0)
    (hwmon / "curr1_input").write_text("1400\n")  # 7 W
    now[0] += 1.0
    assert sensor.read_joules() - start == pytest.approx(5.0 + 6.0)  # trapezoid 5 -> 7 W


def test_jetson_samples_in_the_background(ina3221_tree):
    root, _ = ina3221_tree
    sensor = JetsonSensor(root=root, poll_s=0.001)
    assert sensor.available() is None
    sensor.start()
    start = sensor.read_joules()
    first = sensor._last[0]
    time.sleep(0.05)
    sampled = sensor._last[0]  # moved on without being asked
    sensor.stop()
    assert sensor._thread is None and sampled > first
    joules = sensor.read_joules() - start  # 5 W from the first sample to this one
    assert joules == pytest.approx(5.0 * (sensor._last[0] - first), rel=1e-6)
    assert joules >= 5.0 * 0.05


def test_jetson_names_what_is_missing(ina3221_tree, tmp_path):
    root, _ = ina3221_tree
    reason = JetsonSensor(root=root, rail="VDD_GPU").available()
    assert "no INA3221 channel labelled VDD_GPU" in reason and "VDD_SOC" in reason
    assert "not a Jetson" in JetsonSensor(root=tmp_path / "nope").available()


# -- NVML ---------------------------------------------------------------------------------


class _NVMLError(Exception):
    pass


class _NotSupported(_NVMLError):
    pass


_NotSupported.__name__ = "NVMLError_NotSupported"


def _stub_nvml(energy_mj, supported=True):
    """A module with the pynvml functions the sensor calls."""
    calls = []
    module = types.ModuleType("pynvml")
    module.NVMLError = _NVMLError
    module.NVMLError_NotSupported = _NotSupported
    module.nvmlInit = lambda: calls.append("init")
    module.nvmlDeviceGetHandleByIndex = lambda i: f"handle{i}"
    module.nvmlDeviceGetHandleByUUID = lambda u: f"handle-{u}"
    module.nvmlDeviceGetName = lambda h: b"Tesla V100-SXM2-16GB"

    def energy(handle):
        calls.append(handle)
        if not supported:
            raise _NotSupported("Not Supported")
        return energy_mj[0]

    module.nvmlDeviceGetTotalEnergyConsumption = energy
    return module, calls


def test_nvml_reads_the_total_energy_counter(monkeypatch):
    counter = [123_456_789]
    stub, calls = _stub_nvml(counter)
    monkeypatch.setitem(sys.modules, "pynvml", stub)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    sensor = NvmlSensor("cuda:1")
    assert sensor.available() is None
    assert sensor.domain == "GPU 1 board (Tesla V100-SXM2-16GB)"
    start = sensor.read_joules()
    counter[0] += 2_500  # mJ
    assert sensor.read_joules() - start == pytest.approx(2.5)
    assert "handle3" in calls  # torch's cuda:1 is NVML's GPU 3 here


def test_nvml_reasons(monkeypatch):
    stub, _ = _stub_nvml([0], supported=False)
    monkeypatch.setitem(sys.modules, "pynvml", stub)
    reason = NvmlSensor("cuda:0").available()
    assert "has no total energy counter" in reason and "Volta" in reason
    assert "meters NVIDIA GPUs" in NvmlSensor("cpu").available()
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert "nvidia-ml-py" in NvmlSensor("cuda:0").available()

    def no_driver():
        raise _NVMLError("Driver Not Loaded")

    stub.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", stub)
    assert "Driver Not Loaded" in NvmlSensor("cuda:0").available()


# -- choosing a sensor --------------------------------------------------------------------


class ConstantPower(EnergySensor):
    """10 W, forever."""

    name = "constant"
    devices = ("cpu",)
    update_period_s = 0.0001

    def available(self):
        return None

    def read_joules(self):
        return 10.0 * time.perf_counter()


class SensorPlugin:
    @hookimpl
    def kdbench_register_sensors(self, register):
        register(ConstantPower, name="constant")


def _no_builtin_sensor(monkeypatch, tmp_path):
    monkeypatch.setattr("kdbench.device.sensors.rapl.ROOT", tmp_path / "no-powercap")
    monkeypatch.setattr("kdbench.device.sensors.jetson.ROOT", tmp_path / "no-ina3221")


def test_auto_explains_every_sensor_it_tried(monkeypatch, tmp_path):
    _no_builtin_sensor(monkeypatch, tmp_path)
    choice = select_sensor(plugins.get_registry(), "auto", "cpu")
    assert choice.sensor is None
    assert choice.reason.startswith("no energy counter can be read on cpu")
    assert "rapl: no" in choice.reason and "jetson: no" in choice.reason
    assert "nvml" not in choice.reason  # nvml meters GPUs only


def test_auto_falls_back_to_a_plugin_sensor(monkeypatch, tmp_path):
    _no_builtin_sensor(monkeypatch, tmp_path)
    with plugins.temporary_plugin(SensorPlugin(), distribution="tests") as registry:
        choice = select_sensor(registry, "auto", "cpu")
        assert isinstance(choice.sensor, ConstantPower) and choice.reason is None
        assert choice.component.distribution == "tests"
        named = select_sensor(registry, "rapl", "cpu")
        assert named.sensor is None and "rapl: no" in named.reason
    none = select_sensor(plugins.get_registry(), "none", "cpu")
    assert none.sensor is None and "sensor=none" in none.reason

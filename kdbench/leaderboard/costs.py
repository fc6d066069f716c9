"""What each backbone costs on each device, joined to the rows of the score tables.

A row joins the device records of its suite that measured the same backbone: the record's
``components["subject"]`` with the same name and version, so each (method, student) row
takes the cost of its student. Latency and energy are per device fingerprint, never mixed
across devices; parameters and FLOPs do not depend on the device (their mean over the
devices that measured the backbone is used).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kdbench.leaderboard.aggregate import Row
from kdbench.leaderboard.devices import DEVICE_PROTOCOL, fingerprint_summary
from kdbench.leaderboard.intake import RecordFile, table_device


@dataclass(frozen=True)
class CostAxis:
    """A cost metric of device records that scores are plotted against."""

    metric: str
    label: str
    per_device: bool


LATENCY = CostAxis("latency_p50_ms", "latency p50 (ms)", per_device=True)
ENERGY = CostAxis("energy_mj_per_image", "energy (mJ/image)", per_device=True)
PARAMS = CostAxis("params_m", "parameters (M)", per_device=False)
#: The device protocol's FLOPs of one image (``kdbench.device.figures``: FlopCounterMode,
#: 2 FLOPs per multiply-accumulate).
FLOPS = CostAxis("gflops", "FLOPs (GFLOPs)", per_device=False)
#: Device-independent axes first, then the per-device ones.
COST_AXES = (PARAMS, FLOPS, LATENCY, ENERGY)

Subject = tuple[str, str]


@dataclass
class DeviceCosts:
    """Mean cost metrics per (suite, device, subject), from the ranked device records."""

    values: dict[tuple[str, str, Subject, str], list[float]] = field(default_factory=dict)
    reasons: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)  # fingerprint id -> summary

    def mean(self, suite: str, device: str, subject: Subject, metric: str) -> float | None:
        values = self.values.get((suite, device, subject, metric))
        return sum(values) / len(values) if values else None

    def suite_devices(self, suite: str) -> list[str]:
        return sorted({d for (s, d, _, _) in self.values if s == suite})

    def subjects(self, suite: str) -> set[Subject]:
        return {subject for (s, _, subject, _) in self.values if s == suite}

    def cost(self, suite: str, device: str | None, row: Row, axis: CostAxis) -> float | None:
        """What ``row``'s backbone costs on ``axis``: on ``device`` for a per-device axis,
        else the mean over every device of the suite that measured it."""
        if row.subject is None:
            return None
        if axis.per_device:
            if device is None:
                raise ValueError(f"{axis.metric} is per device: name the device")
            return self.mean(suite, device, row.subject, axis.metric)
        values = [
            v
            for d in self.suite_devices(suite)
            for v in self.values.get((suite, d, row.subject, axis.metric), [])
        ]
        return sum(values) / len(values) if values else None

    def missing_reasons(self, suite: str, device: str | None, axis: CostAxis) -> list[str]:
        """Why device records of ``suite`` (on ``device``, or any) have no ``axis`` value."""
        devices = [device] if device is not None else self.suite_devices(suite)
        return sorted({r for d in devices for r in self.reasons.get((suite, d, axis.metric), ())})


def device_costs(files: Sequence[RecordFile]) -> DeviceCosts:
    """Collect the cost metrics of every ranked device record that names its subject."""
    costs = DeviceCosts()
    wanted = {axis.metric for axis in COST_AXES}
    for file in sorted(files, key=lambda f: f.path):
        record = file.record
        if record is None or record.protocol.name != DEVICE_PROTOCOL:
            continue
        subject = record.components.get("subject")
        if subject is None or record.device_fingerprint is None:
            continue
        device = table_device(record)
        costs.devices[device] = fingerprint_summary(record.device_fingerprint)
        key = (subject.name, subject.version)
        for metric in record.metrics:
            if metric.name not in wanted:
                continue
            slot = costs.values.setdefault((record.suite, device, key, metric.name), [])
            if metric.value is not None:
                slot.append(metric.value)
            else:
                reasons = costs.reasons.setdefault((record.suite, device, metric.name), set())
                reasons.add(metric.reason or "not measured")
    return costs

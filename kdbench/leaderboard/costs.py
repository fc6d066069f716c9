"""What each backbone costs on each device, joined to the rows of the score tables.

A row joins the device records of its suite that measured the same backbone: the record's
``components["subject"]`` with the same name and version, so each (method, student) row
takes the cost of its student. Latency and energy are per device fingerprint, never mixed
across devices; parameters and FLOPs do not depend on the device (their mean over the
devices that measured the backbone is used).

A row scored at a precision (a table of ``kdbench run --precision int8``) takes the cost of
its student at that precision: the latency of the device records run at the same
precision (``quant_latency_p50_ms``, the quantised model on int8 kernels). Parameters and
FLOPs do not change with the precision; a simulated precision has no latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kdbench.leaderboard.aggregate import Row
from kdbench.leaderboard.devices import DEVICE_PROTOCOL, fingerprint_summary
from kdbench.leaderboard.intake import RecordFile, table_device
from kdbench.leaderboard.precisions import FP32, record_precision


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

#: What a device record run at a precision contributes, under the cost axis it stands for.
AT_PRECISION = {
    "quant_latency_p50_ms": LATENCY.metric,
    PARAMS.metric: PARAMS.metric,
    FLOPS.metric: FLOPS.metric,
}


@dataclass
class DeviceCosts:
    """Mean cost metrics per (suite, device, subject, precision), from the ranked device
    records."""

    values: dict[tuple[str, str, Subject, str, str], list[float]] = field(default_factory=dict)
    reasons: dict[tuple[str, str, str, str], set[str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)  # fingerprint id -> summary

    def mean(
        self, suite: str, device: str, subject: Subject, metric: str, precision: str = FP32
    ) -> float | None:
        values = self.values.get((suite, device, subject, metric, precision))
        return sum(values) / len(values) if values else None

    def suite_devices(self, suite: str) -> list[str]:
        return sorted({d for (s, d, *_) in self.values if s == suite})

    def subjects(self, suite: str) -> set[Subject]:
        return {subject for (s, _, subject, *_) in self.values if s == suite}

    def cost(
        self, suite: str, device: str | None, row: Row, axis: CostAxis, precision: str = FP32
    ) -> float | None:
        """What ``row``'s backbone costs on ``axis`` at ``precision``: on ``device`` for a
        per-device axis, else the mean over every device of the suite that measured it
        (at fp32 when no record at ``precision`` did: counts do not change with it)."""
        if row.subject is None:
            return None
        if axis.per_device:
            if device is None:
                raise ValueError(f"{axis.metric} is per device: name the device")
            return self.mean(suite, device, row.subject, axis.metric, precision)
        for at in dict.fromkeys((precision, FP32)):
            values = [
                v
                for d in self.suite_devices(suite)
                for v in self.values.get((suite, d, row.subject, axis.metric, at), [])
            ]
            if values:
                return sum(values) / len(values)
        return None

    def missing_reasons(
        self, suite: str, device: str | None, axis: CostAxis, precision: str = FP32
    ) -> list[str]:
        """Why device records of ``suite`` (on ``device``, or any) have no ``axis`` value
        at ``precision``."""
        devices = [device] if device is not None else self.suite_devices(suite)
        return sorted(
            {r for d in devices for r in self.reasons.get((suite, d, axis.metric, precision), ())}
        )


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
        precision = record_precision(record)
        for metric in record.metrics:
            name = metric.name if precision == FP32 else AT_PRECISION.get(metric.name)
            if name not in wanted:
                continue
            slot = costs.values.setdefault((record.suite, device, key, name, precision), [])
            if metric.value is not None:
                slot.append(metric.value)
            else:
                where = (record.suite, device, name, precision)
                costs.reasons.setdefault(where, set()).add(metric.reason or "not measured")
    return costs

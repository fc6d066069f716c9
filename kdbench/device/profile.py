"""``kdbench device MODEL`` as a Python API: the device protocol's measurement of any
registered teacher or student, or any timm architecture, outside a benchmark run."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.device.defaults import default_device_config
from kdbench.device.measure import DeviceReport, measure_on_pool
from kdbench.device.precision import parse_precisions
from kdbench.device.sensors import select_sensor
from kdbench.device.subject import load_backbone
from kdbench.registry import Registry
from kdbench.terminal import text_table


@dataclass
class Profile:
    """A measured model: what was built and the report."""

    model: str
    kind: str
    options: dict[str, Any]
    report: DeviceReport
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": self.kind[:-1],
            "options": self.options,
            "metrics": [m.model_dump(mode="json") for m in self.report.metrics()],
            "device_fingerprint": self.report.fingerprint,
            "statistics": self.report.statistics(),
            "notes": self.notes + self.report.notes,
        }


def resolve_model(registry: Registry, name: str) -> tuple[str, str]:
    """``(kind, registered name)`` for a teacher, a student or a timm architecture."""
    for kind in ("students", "teachers"):
        if name in registry.names(kind):
            return kind, name
    prefix = name.partition(":")[0]
    for kind in ("students", "teachers"):  # a family such as open_clip:* (any model of it)
        if f"{prefix}:*" in registry.names(kind) and prefix != "timm":
            return kind, name
    import timm

    member = name.removeprefix("timm:")
    if timm.is_model(member):
        return "students", f"timm:{member}"
    known = registry.names("students") + registry.names("teachers")
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    close += [f"timm:{m}" for m in timm.list_models(f"*{member.split('.')[0]}*")[:3]]
    hint = f" Did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    raise ValueError(
        f"unknown model {name!r}: not a registered teacher or student "
        f"({', '.join(k for k in known if not k.endswith(':*'))}) nor a timm architecture.{hint}"
    )


def profile_model(
    registry: Registry,
    name: str,
    *,
    img_size: int | None = None,
    batch_size: int = 32,
    precisions: str | list[str] = "fp32,bf16,fp16,int8",
    threads: int | None = None,
    smoke: bool = False,
    weights: str | Path | None = None,
    device: str = "cpu",
    sensor: str = "auto",
    seed: int = 0,
    log: Any = None,
) -> Profile:
    """Measure ``name`` as the device protocol does (its embedded tier, or smoke).

    timm and open_clip architectures are built with random weights unless ``weights``
    names a file: weight values do not change the cost, and nothing is downloaded.
    """
    kind, registered = resolve_model(registry, name)
    config = default_device_config("embedded", smoke)
    config["throughput"]["batch_size"] = int(batch_size)
    if threads is not None:
        config["threads"] = int(threads)
    config["precisions"] = parse_precisions(precisions)
    options: dict[str, Any] = {}
    if weights is not None:
        options["weights"] = str(weights)
    elif registered.startswith(("timm:", "open_clip:")):
        options["pretrained"] = False
    backbone, options, notes = load_backbone(
        registry, kind, {"name": registered, "options": options}, img_size, True
    )
    choice = select_sensor(registry, sensor, device)
    _, report = measure_on_pool(backbone, config, seed=seed, device=device, choice=choice, log=log)
    return Profile(registered, kind, options, report, notes)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits}f}"


def format_profile(profile: Profile) -> str:
    """The table ``kdbench device`` prints."""
    report = profile.report
    metrics = {m.name: m for m in report.metrics()}
    size = "x".join(str(s) for s in report.input_size)
    weights = "random weights" if profile.options.get("pretrained") is False else "weights"
    if profile.options.get("weights"):
        weights = f"weights {profile.options['weights']}"
    lines = [
        f"{profile.model} at {size} on {report.device}, {report.threads} thread(s), {weights}",
        f"device: {report.fingerprint['summary']} (fingerprint {report.fingerprint['id']})",
        f"params {metrics['params_m'].value:.3f} M · {metrics['gflops'].value:.4g} GFLOPs "
        f"= {metrics['gmacs'].value:.4g} GMACs (FlopCounterMode: 2 FLOPs per multiply-accumulate)",
        "",
    ]
    header = ("precision", "p50 ms", "p90 ms", "p99 ms", "IQR/p50",
              f"img/s @{report.batch_size}", "peak MB", "mJ/img", "dyn mJ/img")  # fmt: skip
    rows: list[tuple[str, ...]] = []
    unsupported = []
    for precision, result in report.results.items():
        sfx = "" if precision == "fp32" else f"_{precision}"
        if result.reason is not None:
            unsupported.append(f"{precision}: {result.reason}")
            continue
        values = [
            (metrics[base + sfx].value, digits)
            for base, digits in (
                ("latency_p50_ms", 3),
                ("latency_p90_ms", 3),
                ("latency_p99_ms", 3),
                ("latency_iqr_ratio", 2),
                ("throughput_ips", 1),
                ("peak_memory_mb", 2),
                ("energy_mj_per_image", 3),
                ("energy_dynamic_mj_per_image", 3),
            )
        ]
        rows.append((precision, *(_fmt(v, d) for v, d in values)))
    lines += text_table(header, rows, numeric=True, rule=False)
    lines.append("")
    fp32 = report.results.get("fp32")
    if fp32 is not None and fp32.latency is not None:
        lines.append(
            f"fp32 latency: {fp32.latency.calls} queries over {fp32.latency.seconds:.1f} s"
        )
    lines += [f"not measured: {text}" for text in unsupported]
    if report.sensor is not None:
        idle = metrics["idle_power_w"].value
        lines.append(
            f"energy: {report.sensor['name']} ({report.sensor['domain']}), idle {_fmt(idle)} W"
        )
    else:
        lines.append(f"energy: null ({report.energy_reason})")
    lines += [f"note: {n}" for n in profile.notes + report.notes]
    return "\n".join(lines)

"""Synthetic result records for the leaderboard's tests and benchmark.

The records follow the protocols' conventions: headline metrics flagged, ``student`` naming
the run's student and ``subject`` the scored backbone (the student, or the teacher for
teacher rows), device records with a fingerprint and a null energy with its reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kdbench.results import config_hash

CPU = {"cpu": "Test CPU 8-core", "machine": "x86_64", "torch_threads": 8}
GPU = {"gpu": "Test GPU 80GB", "driver": "550.54", "cuda": "12.4"}

#: (name, unit, higher_is_better, headline) per protocol, in record order.
METRICS: dict[str, tuple[tuple[str, str | None, bool, bool], ...]] = {
    "distill": (
        ("student_top1", "%", True, True),
        ("teacher_top1", "%", True, False),
        ("cka", None, True, False),
    ),
    "fewshot": (("acc_1shot", "%", True, True), ("acc_5shot", "%", True, True)),
    "oneclass": (("auroc", None, True, True), ("fpr95", "%", False, False)),
    "segmentation": (("miou", "%", True, True),),
    "device": (
        ("latency_p50_ms", "ms", False, True),
        ("latency_p90_ms", "ms", False, False),
        ("throughput_ips", "images/s", True, False),
        ("params_m", "M", False, False),
        ("gflops", "GFLOPs", False, False),
        ("energy_mj_per_image", "mJ/image", False, True),
    ),
}

#: The teacher of every synthetic record.
TEACHER = "shapes-teacher"
#: The student of a record that scores the teacher (the suite's default student).
DEFAULT_STUDENT = "shapes-vit-tiny"

#: Backbones and their cost: (params in millions, latency in ms on the CPU).
BACKBONES = {
    "shapes-vit-tiny": (0.6, 1.5),
    "shapes-vit-small": (2.2, 4.0),
    "shapes-vit-base": (8.5, 12.0),
    "shapes-teacher": (22.0, 40.0),
}


def _noise(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from ``parts``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def metric(
    name: str,
    value: float | None,
    *,
    higher_is_better: bool = True,
    unit: str | None = "%",
    headline: bool = False,
    ci95: float | None = 0.5,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "ci95": None if value is None else ci95,
        "n": 100,
        "higher_is_better": higher_is_better,
        "unit": unit,
        "headline": headline,
        "reason": reason,
    }


def default_metrics(
    protocol: str, method: str, seed: int, subject: str, gpu: bool = False
) -> list[dict[str, Any]]:
    """Plausible metrics of ``protocol`` for a method; stable for the same arguments.

    On a GPU (``gpu=True``) device records are faster and measure energy.
    """
    params, latency = BACKBONES.get(subject, (1.0, 2.0))
    latency = latency / 10 if gpu else latency
    # bigger backbones tend to score higher, so plots have a frontier to draw
    skill = 35 + 6 * math.log2(1 + params) + 25 * _noise(protocol, method)
    skill += 2 * _noise(protocol, method, seed)
    out = []
    for name, unit, hib, headline in METRICS.get(protocol, METRICS["fewshot"]):
        if protocol == "device":
            values = {
                "latency_p50_ms": latency * (1 + 0.02 * _noise(method, seed)),
                "latency_p90_ms": latency * 1.2,
                "throughput_ips": 1000 / latency,
                "params_m": params,
                "gflops": round(0.35 * params**1.2, 6),
                "energy_mj_per_image": 30 * latency if gpu else None,
            }
            value = values.get(name)
            reason = None if value is not None else "no energy counter on this CPU"
            out.append(
                metric(
                    name,
                    value,
                    higher_is_better=hib,
                    unit=unit,
                    headline=headline,
                    ci95=None,
                    reason=reason,
                )
            )
        else:
            value = skill + (10 if name.endswith("5shot") else 0)
            if unit is None:
                value = value / 100
            out.append(
                metric(
                    name,
                    round(value, 4),
                    higher_is_better=hib,
                    unit=unit,
                    headline=headline,
                    ci95=0.4,
                )
            )
    return out


def make_record(
    *,
    protocol: str = "fewshot",
    version: int = 1,
    suite: str = "embedded",
    method: str = "kd",
    method_version: str = "0.1.0",
    seed: int = 0,
    reference: bool = False,
    smoke: bool = False,
    status: str = "ok",
    subject: str | None = "shapes-vit-tiny",
    student: str | None = "",
    metrics: list[dict[str, Any]] | None = None,
    fingerprint: dict[str, Any] | None = None,
    run_id: str | None = None,
    created_at: str = "2026-01-01T00:00:00Z",
    description: str | None = None,
    url: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid record as a dict; every argument changes one field.

    ``student`` is the run's student: by default the ``subject`` (or
    :data:`DEFAULT_STUDENT` when the subject is the teacher); None for no student component.
    """
    config = {"episodes": 100, "suite": suite} if config is None else config
    components: dict[str, Any] = {
        "protocol": {"name": protocol, "distribution": "kdbench", "version": "0.1.0"},
    }
    if student == "":
        student = None if subject is None else (DEFAULT_STUDENT if subject == TEACHER else subject)
    if subject is not None:
        components["subject"] = {"name": subject, "distribution": "kdbench", "version": "0.1.0"}
        components["teacher"] = {"name": TEACHER, "distribution": "kdbench", "version": "0.1.0"}
    if student is not None:
        components["student"] = {"name": student, "distribution": "kdbench", "version": "0.1.0"}
    if protocol == "device" and fingerprint is None:
        fingerprint = CPU
    record: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_id
        or hashlib.sha256(
            f"{suite}/{protocol}/{version}/{method}/{method_version}/{seed}/{smoke}/"
            f"{json.dumps(fingerprint, sort_keys=True)}{_student_part(subject, student)}".encode()
        ).hexdigest()[:32],
        "created_at": created_at,
        "status": status,
        "smoke": smoke,
        "suite": suite,
        "kdbench": {"version": "0.1.0", "git_sha": "0123abcd", "git_dirty": False},
        "protocol": {
            "name": protocol,
            "version": version,
            "config": config,
            "config_hash": config_hash(config),
        },
        "dataset": {"name": "shapes", "version": "1", "sizes": {"train": 100, "test": 50}},
        "method": {
            "name": method,
            "distribution": "kdbench",
            "version": method_version,
            "description": description,
            "url": url,
            "reference": reference,
        },
        "components": components,
        "seed": seed,
        "draws": {"episodes": hashlib.sha256(f"{seed}".encode()).hexdigest()},
        "metrics": metrics
        if metrics is not None
        else default_metrics(
            protocol, method, seed, subject or "", gpu=bool(fingerprint and "gpu" in fingerprint)
        ),
        "cost": {"train_seconds": 10.0, "total_seconds": 12.5, "device": "cpu"},
        "environment": {
            "python": "3.11.9",
            "platform": "Linux-x86_64",
            "torch": "2.5.1",
            "devices": ["cpu"],
            "cpu": "Test CPU",
        },
        "device_fingerprint": fingerprint,
    }
    if status == "failed":
        record["error"] = {"type": "FloatingPointError", "message": "loss became NaN at step 3"}
        record["metrics"] = []
    return record


def _student_part(subject: str | None, student: str | None) -> str:
    """What a record's student adds to its run id and file name: nothing for the default
    student (or none), else ``@student`` (``@subject@student`` when the subject is another
    backbone than the student and the teacher)."""
    if student is None or (student == DEFAULT_STUDENT and subject in (student, TEACHER)):
        return ""
    return f"@{student}" if subject in (student, TEACHER) else f"@{subject}@{student}"


def record_path(record: dict[str, Any]) -> str:
    """The runner's layout: ``<suite>/<protocol>/<method>[@student]-seed<seed>[.smoke].json``
    (plus the protocol version and the device, so synthetic records never share a path)."""
    smoke = ".smoke" if record.get("smoke") else ""
    method = record["method"]["name"]
    components = record.get("components", {})
    subject = components.get("subject", {}).get("name")
    student = components.get("student", {}).get("name")
    method += _student_part(subject, student)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in method)
    device = ""
    if record.get("device_fingerprint") is not None:
        device = (
            "-"
            + hashlib.sha256(
                json.dumps(record["device_fingerprint"], sort_keys=True).encode()
            ).hexdigest()[:6]
        )
    version = f"-v{record['protocol']['version']}"
    return (
        f"{record['suite']}/{record['protocol']['name']}/"
        f"{safe}{version}{device}-seed{record['seed']}{smoke}.json"
    )


def write_records(folder: Path, records: Iterable[dict[str, Any]]) -> list[Path]:
    """Write each record as JSON under ``folder``; returns the paths."""
    paths = []
    for record in records:
        path = Path(folder) / record_path(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def leaderboard_records(
    methods: int = 6,
    seeds: int = 3,
    suites: tuple[str, ...] = ("embedded",),
    protocols: tuple[str, ...] = ("distill", "fewshot", "oneclass", "segmentation", "device"),
    fingerprints: tuple[dict[str, Any], ...] = (CPU,),
) -> list[dict[str, Any]]:
    """A full leaderboard: every protocol x suite x method x seed, plus reference rows."""
    students = [b for b in BACKBONES if b != "shapes-teacher"]
    names = [(f"method-{i:03d}", students[i % len(students)], False) for i in range(methods)]
    names += [("teacher", "shapes-teacher", True), ("scratch", students[0], True)]
    out = []
    for suite in suites:
        for protocol in protocols:
            devices = fingerprints if protocol == "device" else (None,)
            for fingerprint in devices:
                for name, subject, reference in names:
                    for seed in range(seeds):
                        out.append(
                            make_record(
                                protocol=protocol,
                                suite=suite,
                                method=name,
                                seed=seed,
                                reference=reference,
                                subject=subject,
                                fingerprint=fingerprint,
                            )
                        )
    return out


def zoo_records(
    students: tuple[str, ...] = ("shapes-vit-tiny", "shapes-vit-small", "shapes-vit-base"),
    methods: tuple[str, ...] = ("supervised", "kd", "fitnets"),
    seeds: int = 3,
    fingerprints: tuple[dict[str, Any], ...] = (CPU, GPU),
) -> list[dict[str, Any]]:
    """A fewshot leaderboard of method x student x seed, the teacher row, and a device record
    of every student (method ``student``) and of the teacher on each fingerprint."""
    out = [
        make_record(method=method, subject=student, seed=seed)
        for method in methods
        for student in students
        for seed in range(seeds)
    ]
    out += [
        make_record(method="teacher", subject=TEACHER, seed=seed, reference=True)
        for seed in range(seeds)
    ]
    for fingerprint in fingerprints:
        for subject in (*students, TEACHER):
            out.append(
                make_record(
                    protocol="device",
                    method="teacher" if subject == TEACHER else "student",
                    subject=subject,
                    reference=True,
                    fingerprint=fingerprint,
                )
            )
    return out

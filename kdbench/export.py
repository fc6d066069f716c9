"""``kdbench export``: the ranked records in other evaluation frameworks' public formats.

Two formats, each written from the same records the leaderboard ranks (valid, finished,
not smoke, current protocol version, newest per unit; see :mod:`kdbench.leaderboard.intake`):

``every-eval-ever``
    The Every Eval Ever schema (``eval.schema.json``, version :data:`EEE_SCHEMA_VERSION`,
    github.com/evaleval/every_eval_ever): one file per record, laid out as that repository's
    ``data/{benchmark}/{developer}/{model}/`` folders. The benchmark is
    ``kdbench-<suite>-<protocol>``, the developer the method's distribution and the model the
    row (``method@student``). Each non-null metric is one evaluation result with its 95% CI;
    a null metric cannot be a score there, so it is listed with its reason in the source
    metadata.
``lm-eval``
    The results file lm-evaluation-harness writes (``results_*.json``: ``results``,
    ``versions``, ``higher_is_better``, ``n-samples``, ``configs``, ``config``), one per
    (suite, row, seed) with each protocol as a task, so tools that read lm-eval output (its
    own table printer, Every Eval Ever's lm-eval converter) read kdbench's. lm-eval reports a
    standard error, so ``<metric>_stderr`` is the record's CI half-width divided by 1.96, and
    ``"N/A"`` where the record has no CI.

Exports are deterministic: the same records give the same bytes, timestamps come from the
records' ``created_at``, and nothing is written outside ``out``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.atomic import atomic_write_text
from kdbench.errors import ConfigError
from kdbench.results import Metric, Record

EEE_SCHEMA_VERSION = "0.2.1"
"""The Every Eval Ever schema version the export follows."""

Z95 = 1.959963984540054
"""The normal quantile a 95% CI half-width is divided by to give a standard error."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass
class ExportReport:
    """What an export wrote."""

    format: str
    records: int = 0
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    """Records not exported (not ranked), by the intake's reason."""


def path_part(name: str) -> str:
    """``name`` as one safe path component (record text is untrusted)."""
    part = _UNSAFE.sub("_", name).strip("._") or "_"
    return part[:100]


def row_name(record: Record) -> str:
    """The leaderboard row a record belongs to: ``method@student`` or the method alone."""
    from kdbench.leaderboard.students import row_student

    student = row_student(record)
    return record.method.name if student is None else f"{record.method.name}@{student}"


def task_name(record: Record) -> str:
    """``kdbench_<suite>_<protocol>``, with the dataset (name and manifest sha256) for data on
    disk and the device fingerprint's short id for device records, so that two datasets or
    two machines stay two tasks."""
    from kdbench.leaderboard.devices import fingerprint_id, short_id

    name = f"kdbench_{record.suite}_{record.protocol.name}"
    if record.dataset is not None and record.dataset.manifest_sha256:  # data on disk
        name += f"_{record.dataset.name}-{record.dataset.manifest_sha256[:12]}"
    if record.device_fingerprint:
        name += f"_{short_id(fingerprint_id(record.device_fingerprint))}"
    return name


def _epoch(record: Record) -> str:
    return str(int(record.created_at.timestamp()))


def _strings(values: dict[str, Any]) -> dict[str, str]:
    """Every Eval Ever's ``additional_details``: string values only, None left out."""
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out


def _ci_method(record: Record, metric: Metric) -> str:
    over = f"over {metric.n} samples" if metric.n else "over the record's samples"
    if metric.per_seed:
        return f"95% CI across seeds ({len(metric.per_seed)}), Student's t"
    return f"95% CI within the record (seed {record.seed}), {over}"


def eee_log(record: Record, raw: bytes, describe: Callable[[str, str], str | None]) -> dict:
    """One record as an Every Eval Ever evaluation log."""
    protocol = record.protocol.name
    benchmark = f"kdbench-{record.suite}-{protocol}"
    row = row_name(record)
    model_id = f"{record.method.distribution}/{row}"
    when = _epoch(record)
    dataset = record.dataset
    source_data = {
        "dataset_name": dataset.name if dataset else "unknown",
        "source_type": "other",
        "additional_details": _strings(
            {
                "version": dataset.version if dataset else None,
                "manifest_sha256": dataset.manifest_sha256 if dataset else None,
                "sizes": dataset.sizes if dataset else None,
                "draws": record.draws or None,
            }
        ),
    }
    results = []
    nulls = []
    for metric in record.metrics:
        if metric.value is None:
            nulls.append(f"{metric.name}: {metric.reason}")
            continue
        config: dict[str, Any] = {
            "evaluation_description": describe(protocol, metric.name) or metric.name,
            "lower_is_better": not metric.higher_is_better,
            "additional_details": _strings(
                {"unit": metric.unit, "headline": "true" if metric.headline else "false"}
            ),
        }
        if metric.unit == "%":
            config.update(score_type="continuous", min_score=0.0, max_score=100.0)
        score: dict[str, Any] = {"score": metric.value}
        uncertainty: dict[str, Any] = {}
        if metric.ci95 is not None:
            uncertainty["confidence_interval"] = {
                "lower": metric.value - metric.ci95,
                "upper": metric.value + metric.ci95,
                "confidence_level": 0.95,
                "method": _ci_method(record, metric),
            }
        if metric.n is not None:
            uncertainty["num_samples"] = metric.n
        if uncertainty:
            score["uncertainty"] = uncertainty
        results.append(
            {
                "evaluation_name": f"{task_name(record)}/{metric.name}",
                "source_data": source_data,
                "evaluation_timestamp": when,
                "metric_config": config,
                "score_details": score,
            }
        )
    student = record.components.get("student")
    teacher = record.components.get("teacher")
    return {
        "schema_version": EEE_SCHEMA_VERSION,
        "evaluation_id": f"{benchmark}/{model_id}/{when}",
        "dedupe_identity": {
            "run_fingerprint": record.protocol.config_hash,
            "content_hash": hashlib.sha256(raw).hexdigest(),
            "hash_algorithm": "sha256",
            "canonicalization_version": "kdbench-record-file-bytes",
            "additional_details": {"run_id": record.run_id},
        },
        "evaluation_timestamp": when,
        "retrieved_timestamp": when,
        "source_metadata": {
            "source_name": "kdbench",
            "source_type": "evaluation_run",
            "source_organization_name": "kdbench",
            "evaluator_relationship": "other",
            "additional_details": _strings(
                {
                    "suite": record.suite,
                    "protocol": protocol,
                    "protocol_version": str(record.protocol.version),
                    "config_hash": record.protocol.config_hash,
                    "seed": str(record.seed),
                    "git_sha": record.kdbench.git_sha,
                    "git_dirty": None
                    if record.kdbench.git_dirty is None
                    else str(record.kdbench.git_dirty).lower(),
                    "null_metrics": "; ".join(nulls) or None,
                    "device_fingerprint": record.device_fingerprint or None,
                }
            ),
        },
        "eval_library": {
            "name": "kdbench",
            "version": record.kdbench.version,
            "additional_details": _strings({"git_sha": record.kdbench.git_sha}),
        },
        "model_info": {
            "name": row,
            "id": model_id,
            "developer": record.method.distribution,
            "inference_platform": "local",
            "additional_details": _strings(
                {
                    "method": record.method.name,
                    "method_version": record.method.version,
                    "method_url": record.method.url,
                    "student": f"{student.name} ({student.distribution} {student.version})"
                    if student
                    else None,
                    "teacher": f"{teacher.name} ({teacher.distribution} {teacher.version})"
                    if teacher
                    else None,
                    "device": record.cost.device,
                }
            ),
        },
        "evaluation_results": results,
    }


def _stderr(metric: Metric) -> float | str:
    return "N/A" if metric.ci95 is None else metric.ci95 / Z95


def lm_eval_results(records: list[Record], describe: Callable[[str, str], str | None]) -> dict:
    """The records of one (suite, row, seed) as one lm-evaluation-harness results file."""
    first = records[0]
    results: dict[str, dict[str, Any]] = {}
    versions: dict[str, int] = {}
    better: dict[str, dict[str, bool]] = {}
    samples: dict[str, dict[str, int]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r.protocol.name):
        task = task_name(record)
        entry: dict[str, Any] = {"alias": task}
        for metric in record.metrics:
            if metric.value is None:
                continue
            entry[f"{metric.name},none"] = metric.value
            entry[f"{metric.name}_stderr,none"] = _stderr(metric)
        results[task] = entry
        versions[task] = record.protocol.version
        better[task] = {m.name: m.higher_is_better for m in record.metrics}
        headline = record.headline()
        if headline is not None and headline.n is not None:
            samples[task] = {"original": headline.n, "effective": headline.n}
        configs[task] = {
            "task": task,
            "dataset_name": record.dataset.name if record.dataset else None,
            "description": describe(record.protocol.name, "") or "",
            "metadata": {
                "version": record.protocol.version,
                "config_hash": record.protocol.config_hash,
                "kdbench_config": record.protocol.config,
                "run_id": record.run_id,
                "null_metrics": {m.name: m.reason for m in record.metrics if m.value is None},
            },
        }
    student = row_name(first)
    newest = max(records, key=lambda r: r.created_at)
    return {
        "results": results,
        "versions": versions,
        "higher_is_better": better,
        "n-samples": samples,
        "configs": configs,
        "config": {
            "model": "kdbench",
            "model_args": f"method={first.method.name},row={student},seed={first.seed}",
            "model_num_parameters": None,
            "batch_size": None,
            "device": first.cost.device,
            "random_seed": first.seed,
        },
        "model_name": student,
        "git_hash": (first.kdbench.git_sha or "")[:7] or None,
        "date": float(newest.created_at.timestamp()),
        "kdbench_version": first.kdbench.version,
    }


def _describer() -> Callable[[str, str], str | None]:
    """Metric (or, with an empty metric name, protocol) descriptions from the installed
    protocols; None where the protocol is not installed here."""
    from kdbench.leaderboard.catalog import Catalog

    catalog = Catalog.from_registry()

    def describe(protocol: str, metric: str) -> str | None:
        if not metric:
            about = catalog.about(protocol)
            return about.description if about else None
        return catalog.metric(protocol, metric, None, True).description

    return describe


FORMATS = ("every-eval-ever", "lm-eval")


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def export_records(
    records: Path,
    out: Path,
    fmt: str,
    *,
    describe: Callable[[str, str], str | None] | None = None,
) -> ExportReport:
    """Write the ranked records under ``records`` to ``out`` in format ``fmt``."""
    from kdbench.leaderboard.intake import read_and_screen, registered_protocol_versions

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not records.is_dir():
        raise ConfigError(f"records folder {str(records)!r} does not exist; pass --records DIR")
    intake = read_and_screen(records, registered_protocol_versions(), skip=out)
    describe = describe or _describer()
    report = ExportReport(fmt, skipped=intake.reason_counts())
    ranked = [(f.record, f.raw) for f in intake.ranked if f.record is not None]
    report.records = len(ranked)
    if fmt == "every-eval-ever":
        for record, raw in ranked:
            log = eee_log(record, raw or b"", describe)
            benchmark = f"kdbench-{record.suite}-{record.protocol.name}"
            path = (
                out
                / "data"
                / path_part(benchmark)
                / path_part(record.method.distribution)
                / path_part(row_name(record))
                / f"{path_part(record.run_id)}.json"
            )
            _write_json(path, log)
            report.files.append(path)
    else:
        groups: dict[tuple[str, str, int], list[Record]] = defaultdict(list)
        for record, _ in ranked:
            groups[(record.suite, row_name(record), record.seed)].append(record)
        for (suite, row, seed), members in sorted(groups.items()):
            path = out / path_part(suite) / path_part(row) / f"results_seed{seed}.json"
            _write_json(path, lm_eval_results(members, describe))
            report.files.append(path)
    report.files.sort()
    return report


def format_report(report: ExportReport, out: Path) -> str:
    skipped = sum(report.skipped.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items())
    tail = f"; {skipped} record file(s) not ranked, not exported ({reasons})" if skipped else ""
    return (
        f"{report.records} ranked record(s) -> {len(report.files)} {report.format} file(s) "
        f"under {out}/{tail}"
    )

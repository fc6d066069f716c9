"""Result records: one JSON file per protocol x method x seed unit.

A record is validated when it is written and when it is read. Numbers are finite or
``null`` (never NaN); a ``null`` metric carries the reason it could not be measured.
Writes are atomic. Records with an older ``schema_version`` go through :data:`MIGRATIONS`
or are refused with a message; records from a newer kdbench are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdbench.atomic import atomic_write_text
from kdbench.errors import RecordError

SCHEMA_VERSION = 1

#: ``{old_version: function(record_dict) -> record_dict of old_version + 1}``.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")


def _finite(value: float | None, what: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number or null, not {value!r}")
    return value


class ComponentRef(_Strict):
    """A component used by a run, with the distribution that provided it."""

    name: str = Field(description="Registered name, e.g. 'kd' or 'timm:vit_small_patch14'.")
    distribution: str = Field(description="Python distribution that registered it.")
    version: str = Field(description="Version of that distribution.")
    description: str | None = Field(None, description="One line, from the plugin (untrusted).")
    url: str | None = Field(None, description="Project page, http(s) only.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options it ran with.")

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url


class MethodRef(ComponentRef):
    """The method (submission) of a run."""

    reference: bool = Field(
        False, description="True for reference rows (teacher alone, student from scratch)."
    )


class KdbenchInfo(_Strict):
    version: str
    git_sha: str | None = Field(None, description="Commit of kdbench's checkout, if any.")
    git_dirty: bool | None = Field(None, description="Uncommitted changes in that checkout.")


class ProtocolInfo(_Strict):
    name: str
    version: int = Field(ge=1, description="Bumped whenever the protocol's numbers could change.")
    config: dict[str, Any] = Field(description="The full configuration the unit ran with.")
    config_hash: str = Field(description="sha256 of the canonical JSON of `config`.")

    @model_validator(mode="after")
    def _hash_matches(self) -> ProtocolInfo:
        if self.config_hash != config_hash(self.config):
            raise ValueError("config_hash does not match config (the config was edited)")
        return self


class DatasetIdentity(_Strict):
    """Which data a unit saw: a generated world's version or a split manifest's sha256."""

    name: str
    version: str | None = Field(None, description="Version of a generated world.")
    manifest_sha256: str | None = Field(None, description="sha256 of the split's file list.")
    sizes: dict[str, int] = Field(default_factory=dict, description="Images per split.")

    @model_validator(mode="after")
    def _identified(self) -> DatasetIdentity:
        if self.version is None and self.manifest_sha256 is None:
            raise ValueError("a dataset needs a `version` or a `manifest_sha256`")
        return self


class Metric(_Strict):
    """One measured number, or null with the reason."""

    name: str = Field(description="e.g. 'student_top1', 'acc_1shot', 'latency_p50_ms'.")
    value: float | None = Field(description="The measurement; null when it could not be made.")
    ci95: float | None = Field(None, ge=0, description="95% CI half-width (mean ± ci95).")
    n: int | None = Field(None, ge=0, description="How many samples the mean and CI are over.")
    per_seed: list[float | None] | None = Field(None, description="Values per seed, if several.")
    higher_is_better: bool
    unit: str | None = Field(None, description="e.g. '%', 'ms', 'mJ/image'.")
    headline: bool = Field(False, description="The protocol's headline metric.")
    reason: str | None = Field(None, description="Why `value` is null.")

    @field_validator("value", "ci95")
    @classmethod
    def _no_nan(cls, value: float | None) -> float | None:
        return _finite(value, "value")

    @field_validator("per_seed")
    @classmethod
    def _no_nan_list(cls, values: list[float | None] | None) -> list[float | None] | None:
        for v in values or []:
            _finite(v, "per_seed entries")
        return values

    @model_validator(mode="after")
    def _null_has_reason(self) -> Metric:
        if self.value is None and not self.reason:
            raise ValueError(f"metric {self.name!r} is null and needs a `reason`")
        return self


@dataclass(frozen=True)
class MetricSpec:
    """A metric a protocol declares: its name, direction and unit."""

    name: str
    higher_is_better: bool
    unit: str | None = None
    headline: bool = False
    description: str = ""

    def __call__(
        self,
        value: float | None,
        *,
        ci95: float | None = None,
        n: int | None = None,
        reason: str | None = None,
    ) -> Metric:
        """A :class:`Metric` of this spec; ``value=None`` needs a ``reason``."""
        return Metric(
            name=self.name,
            value=None if value is None else float(value),
            ci95=None if ci95 is None else float(ci95),
            n=n,
            higher_is_better=self.higher_is_better,
            unit=self.unit,
            headline=self.headline,
            reason=reason,
        )


@dataclass(frozen=True)
class MetricFamily:
    """Metrics declared by pattern, one per member of an open set: ``<prefix><member>`` for
    every member (e.g. ``miou_<adapter>`` for whichever adapters a run names, built-in or
    from a plugin). ``description`` may use ``{member}``."""

    prefix: str
    member: str
    """What the suffix names (e.g. ``"adapter"``), for messages and docs."""
    higher_is_better: bool
    unit: str | None = None
    description: str = ""

    def name(self, member: str) -> str:
        return f"{self.prefix}{member}"

    def member_of(self, name: str) -> str | None:
        """The member ``name`` is the metric of, or None if it is not of this family."""
        member = name[len(self.prefix) :] if name.startswith(self.prefix) else ""
        return member or None

    def spec(self, member: str) -> MetricSpec:
        return MetricSpec(
            self.name(member),
            self.higher_is_better,
            self.unit,
            description=self.description.format(member=member),
        )


class Cost(_Strict):
    train_seconds: float | None = Field(None, ge=0)
    eval_seconds: float | None = Field(None, ge=0)
    total_seconds: float = Field(ge=0)
    device: str = Field(description="torch device the unit ran on, e.g. 'cpu', 'cuda:0'.")


class Environment(_Strict):
    python: str
    platform: str
    torch: str
    timm: str | None = None
    numpy: str | None = None
    cuda: str | None = None
    devices: list[str]
    driver: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    torch_threads: int | None = None


class ErrorInfo(_Strict):
    type: str
    message: str


class Record(_Strict):
    """One run of one protocol, one method, one seed."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str = Field(description="Unique id of this record.")
    created_at: datetime = Field(description="When the unit finished (UTC).")
    status: Literal["ok", "failed"]
    smoke: bool = Field(description="Tiny sizes for testing; never ranked.")
    suite: str = Field(description="'embedded' (Shapes world) or 'standard' (real data).")
    kdbench: KdbenchInfo
    protocol: ProtocolInfo
    dataset: DatasetIdentity | None = None
    method: MethodRef
    components: dict[str, ComponentRef] = Field(
        default_factory=dict, description="Every other component by role: teacher, student..."
    )
    seed: int = Field(ge=0)
    draws: dict[str, str] = Field(
        default_factory=dict, description="sha256 of every random draw (episodes, tasks...)."
    )
    metrics: list[Metric] = Field(default_factory=list)
    cost: Cost
    environment: Environment
    device_fingerprint: dict[str, Any] | None = Field(
        None, description="Hardware the latency/energy figures are tied to."
    )
    statistics: dict[str, Any] = Field(
        default_factory=dict, description="Sufficient statistics to rescore the metrics."
    )
    notes: list[str] = Field(default_factory=list)
    error: ErrorInfo | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Record:
        if self.status == "ok" and self.error is not None:
            raise ValueError("status 'ok' with an `error`")
        if self.status == "failed" and self.error is None:
            raise ValueError("status 'failed' needs an `error`")
        if self.status == "ok" and self.dataset is None:
            raise ValueError("status 'ok' needs a `dataset`")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names repeat: {dupes}")
        return self

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"record {self.run_id} has no metric {name!r}")

    def headline(self) -> Metric | None:
        return next((m for m in self.metrics if m.headline), None)


# -- helpers ------------------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a record (what ``kdbench schema`` prints)."""
    schema = Record.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://kdbench.invalid/schema/record-v{SCHEMA_VERSION}.json"
    return schema


# -- reading and writing -----------------------------------------------------------------


@dataclass
class Problem:
    """One thing wrong with one file."""

    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed in a record (use null with a reason)")


def _problems_from(path: Path, error: ValidationError) -> list[Problem]:
    out = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(record)"
        out.append(Problem(path, where, item["msg"]))
    return out


def migrate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring a record dict to :data:`SCHEMA_VERSION` or raise :class:`RecordError`."""
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise RecordError(path, [Problem(path, "schema_version", "missing or not an integer")])
    if version > SCHEMA_VERSION:
        raise RecordError(
            path,
            [
                Problem(
                    path,
                    "schema_version",
                    f"{version} was written by a newer kdbench (this one reads up to "
                    f"{SCHEMA_VERSION}); upgrade kdbench",
                )
            ],
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise RecordError(
                path,
                [
                    Problem(
                        path,
                        "schema_version",
                        f"{version} is no longer supported and has no migration; re-run the "
                        f"unit with this kdbench to get a schema {SCHEMA_VERSION} record",
                    )
                ],
            )
        data = step(data)
        version = data["schema_version"]
    return data


def parse_record(text: str, path: Path) -> Record:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        raise RecordError(path, [Problem(path, "(file)", f"not valid JSON: {error}")]) from None
    if not isinstance(data, dict):
        raise RecordError(path, [Problem(path, "(file)", "a record is a JSON object")])
    data = migrate(data, path)
    try:
        return Record.model_validate(data)
    except ValidationError as error:
        raise RecordError(path, _problems_from(path, error)) from None


def load_record(path: str | Path) -> Record:
    """Read, migrate and validate one record file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RecordError(path, [Problem(path, "(file)", str(error))]) from None
    return parse_record(text, path)


def dump_record(record: Record) -> str:
    data = record.model_dump(mode="json")
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_record(record: Record, path: str | Path) -> Path:
    """Validate ``record`` and write it atomically to ``path``."""
    path = Path(path)
    record = Record.model_validate(record.model_dump())
    atomic_write_text(path, dump_record(record))
    return path


def iter_record_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every ``*.json`` under the given files and folders, sorted, each once."""
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        files = sorted(p.rglob("*.json")) if p.is_dir() else [p]
        for f in files:
            if any(part.startswith(".") for part in f.parts[len(p.parts) :]):
                continue
            if f not in seen:
                seen.add(f)
                yield f


def validate_paths(paths: Iterable[str | Path]) -> tuple[int, list[Problem]]:
    """Check every record under ``paths``; returns (files checked, problems)."""
    checked = 0
    problems: list[Problem] = []
    for f in iter_record_files(paths):
        checked += 1
        if not f.exists():
            problems.append(Problem(f, "(file)", "no such file or folder"))
            continue
        try:
            load_record(f)
        except RecordError as error:
            problems.extend(error.problems)
    return checked, problems

"""Result records: one JSON file per protocol x method x seed unit.

A record is validated when it is written and when it is read. Numbers are finite or
``null`` (never NaN); a ``null`` metric carries the reason it could not be measured.
Writes are atomic. Records with an older ``schema_version`` go through :data:`MIGRATIONS`
or are refused with a message; records from a newer kdbench are refused.

Reading is strict, because records come from anyone who opens a pull request: a value must
already have its type (``"55.5"`` is not a number, ``0`` is not ``false``), a key may appear
once per object, text must be valid Unicode within :data:`MAX_NAME_CHARS` or
:data:`MAX_TEXT_CHARS`, numbers stay within :data:`MAX_MAGNITUDE`, and a file must be a
regular file (never a link) of at most :data:`MAX_RECORD_BYTES` nested at most
:data:`MAX_DEPTH` deep. Records that kdbench builds itself get their over-long text
truncated instead, so one verbose plugin cannot make a run fail.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1

#: ``{old_version: function(record_dict) -> record_dict of old_version + 1}``.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

#: The largest record file that is read (records kdbench writes are about 200 kB).
MAX_RECORD_BYTES = 8 * 1024 * 1024
#: How deeply a record's JSON may nest (records kdbench writes nest 7 deep).
MAX_DEPTH = 64
#: Names, ids, versions and units: at most this many characters.
MAX_NAME_CHARS = 200
#: Descriptions, reasons, notes, error messages and URLs: at most this many characters.
MAX_TEXT_CHARS = 2000
#: The largest magnitude of a metric or a cost: a mean, a CI or a plot of such numbers
#: cannot overflow (the largest float is about 1.8e308).
MAX_MAGNITUDE = 1e100
#: The largest integer (seeds, counts, versions): what a signed 64-bit integer holds.
MAX_INT = 2**63 - 1

SURROGATE = re.compile("[\ud800-\udfff]")

# True while a file is read: over-long text is refused. Otherwise (kdbench building a
# record from a plugin's text) it is truncated.
_READING: contextvars.ContextVar[bool] = contextvars.ContextVar("kdbench_reading", default=False)


@contextlib.contextmanager
def reading_strictly() -> Iterator[None]:
    """Within the block, text that is over its limit or not valid Unicode is refused
    (records read from files) rather than repaired (records kdbench builds)."""
    token = _READING.set(True)
    try:
        yield
    finally:
        _READING.reset(token)


def _text_of(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the type check that follows reports it
        if _READING.get():
            if SURROGATE.search(value):
                raise ValueError("is not valid Unicode text (it holds a lone surrogate)")
            return value
        value = SURROGATE.sub("\ufffd", value)
        return value if len(value) <= limit else value[: limit - 1] + "…"

    return check


#: A name, id, version or unit from a plugin or a record (truncated when kdbench builds it).
Name = Annotated[
    str, BeforeValidator(_text_of(MAX_NAME_CHARS)), StringConstraints(max_length=MAX_NAME_CHARS)
]
#: A description, reason, note or message (truncated when kdbench builds it).
Text = Annotated[
    str, BeforeValidator(_text_of(MAX_TEXT_CHARS)), StringConstraints(max_length=MAX_TEXT_CHARS)
]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")


def _finite(value: float | None, what: str) -> float | None:
    if value is not None and not (math.isfinite(value) and abs(value) <= MAX_MAGNITUDE):
        raise ValueError(
            f"{what} must be a finite number of magnitude at most {MAX_MAGNITUDE:g}, or null, "
            f"not {value!r}"
        )
    return value


class WeightsRef(_Strict):
    """The weights a model ran with: where they came from and the sha256 of their tensors."""

    source: Literal["file", "hub", "shipped", "random"] = Field(
        description="A local file, the model hub, weights shipped with a package, or random."
    )
    sha256: Name | None = Field(
        None,
        description="sha256 of the tensors (each name, dtype, shape and bytes, in name "
        "order); null for random weights.",
    )
    path: Text | None = Field(None, description="The local file, when there is one.")


class ComponentRef(_Strict):
    """A component used by a run, with the distribution that provided it."""

    name: Name = Field(description="Registered name, e.g. 'kd' or 'timm:vit_small_patch14'.")
    distribution: Name = Field(description="Python distribution that registered it.")
    version: Name = Field(description="Version of that distribution.")
    description: Text | None = Field(None, description="One line, from the plugin (untrusted).")
    url: Text | None = Field(None, description="Project page, http(s) only.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options it ran with.")
    weights: WeightsRef | None = Field(
        None, description="The weights of a teacher or student (null: not recorded)."
    )

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
    version: Name
    git_sha: Name | None = Field(None, description="Commit of kdbench's checkout, if any.")
    git_dirty: bool | None = Field(None, description="Uncommitted changes in that checkout.")


class ProtocolInfo(_Strict):
    name: Name
    version: int = Field(
        ge=1, le=MAX_INT, description="Bumped whenever the protocol's numbers could change."
    )
    config: dict[str, Any] = Field(description="The full configuration the unit ran with.")
    config_hash: Name = Field(description="sha256 of the canonical JSON of `config`.")

    @model_validator(mode="after")
    def _hash_matches(self) -> ProtocolInfo:
        if self.config_hash != config_hash(self.config):
            raise ValueError("config_hash does not match config (the config was edited)")
        return self


class DatasetIdentity(_Strict):
    """Which data a unit saw: a generated world's version or a split manifest's sha256."""

    name: Name
    version: Name | None = Field(None, description="Version of a generated world.")
    manifest_sha256: Name | None = Field(None, description="sha256 of the split's file list.")
    sizes: dict[str, Count] = Field(default_factory=dict, description="Images per split.")

    @model_validator(mode="after")
    def _identified(self) -> DatasetIdentity:
        if self.version is None and self.manifest_sha256 is None:
            raise ValueError("a dataset needs a `version` or a `manifest_sha256`")
        return self


class Metric(_Strict):
    """One measured number, or null with the reason."""

    name: Name = Field(description="e.g. 'student_top1', 'acc_1shot', 'latency_p50_ms'.")
    value: float | None = Field(description="The measurement; null when it could not be made.")
    ci95: float | None = Field(None, ge=0, description="95% CI half-width (mean ± ci95).")
    n: Count | None = Field(None, description="How many samples the mean and CI are over.")
    per_seed: list[float | None] | None = Field(None, description="Values per seed, if several.")
    higher_is_better: bool
    unit: Name | None = Field(None, description="e.g. '%', 'ms', 'mJ/image'.")
    headline: bool = Field(False, description="The protocol's headline metric.")
    reason: Text | None = Field(None, description="Why `value` is null.")

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
    train_seconds: float | None = Field(None, ge=0, le=MAX_MAGNITUDE)
    eval_seconds: float | None = Field(None, ge=0, le=MAX_MAGNITUDE)
    total_seconds: float = Field(ge=0, le=MAX_MAGNITUDE)
    device: Name = Field(description="torch device the unit ran on, e.g. 'cpu', 'cuda:0'.")
    phases: dict[str, Annotated[float, Field(ge=0, le=MAX_MAGNITUDE)]] | None = Field(
        None,
        description=(
            "Wall seconds of the unit per phase (data, teacher, student, evaluation, writing, "
            "other), exclusive, adding up to total_seconds; absent in older records."
        ),
    )

    @field_validator("phases")
    @classmethod
    def _known_phases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from kdbench.phases import PHASES

        unknown = sorted(set(value or {}) - set(PHASES))
        if unknown:
            raise ValueError(f"unknown phases {unknown}; phases are {', '.join(PHASES)}")
        return value


class Environment(_Strict):
    python: Name
    platform: Name
    torch: Name
    timm: Name | None = None
    numpy: Name | None = None
    cuda: Name | None = None
    devices: list[Name]
    driver: Name | None = None
    cpu: Name | None = None
    cpu_count: Count | None = None
    torch_threads: Count | None = None
    eval_batch_size: Count | None = Field(
        None, description="Batch size of frozen-model evaluation; training's is in the config."
    )
    determinism: dict[str, bool | Name] | None = Field(
        None,
        description="PyTorch determinism settings the run had (deterministic algorithms, "
        "cuDNN flags, float32 matmul precision).",
    )


class ErrorInfo(_Strict):
    type: Name
    message: Text


class Execution(_Strict):
    """Where and how a unit ran: the executor, the scheduler's job, the machine."""

    executor: Name = Field(description="The executor that ran it: 'inline', 'local', 'slurm'...")
    job_id: Name | None = Field(None, description="The scheduler's job id (a Slurm job id).")
    array_index: Count | None = Field(None, description="Index of the job in its job array.")
    host: Name | None = Field(None, description="Host name of the machine it ran on.")
    attempt: int = Field(1, ge=1, le=MAX_INT, description="1 for the first try, 2 after one...")


class Record(_Strict):
    """One run of one protocol, one method, one seed."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: Name = Field(description="Unique id of this record.")
    created_at: AwareDatetime = Field(
        description="When the unit finished: ISO 8601 with a timezone (read as UTC)."
    )
    status: Literal["ok", "failed"]
    smoke: bool = Field(description="Tiny sizes for testing; never ranked.")
    suite: Name = Field(description="'embedded' (Shapes world) or 'standard' (real data).")
    kdbench: KdbenchInfo
    protocol: ProtocolInfo
    dataset: DatasetIdentity | None = None
    method: MethodRef
    components: dict[str, ComponentRef] = Field(
        default_factory=dict, description="Every other component by role: teacher, student..."
    )
    seed: Count
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
    notes: list[Text] = Field(default_factory=list)
    error: ErrorInfo | None = None
    execution: Execution | None = Field(
        None, description="The executor, job, array index and host that ran the unit."
    )

    @field_validator("schema_version", mode="before")
    @classmethod
    def _integer_version(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1 in Python, but not in a record
            raise ValueError("schema_version must be an integer, not a boolean")
        return value

    @field_validator("created_at", mode="before")
    @classmethod
    def _iso_datetime(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
            try:
                return datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    "must be an ISO 8601 date and time with a timezone, e.g. 2026-01-01T00:00:00Z"
                ) from None
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _consistent(self) -> Record:
        if self.status == "ok" and self.error is not None:
            raise ValueError("status 'ok' with an `error`")
        if self.status == "failed" and self.error is None:
            raise ValueError("status 'failed' needs an `error`")
        if self.status == "ok" and self.dataset is None:
            raise ValueError("status 'ok' needs a `dataset`")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            dupes = sorted(n for n, k in Counter(names).items() if k > 1)
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

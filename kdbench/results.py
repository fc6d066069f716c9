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
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from kdbench.atomic import atomic_write_text
from kdbench.errors import RecordError

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

_SURROGATE = re.compile("[\ud800-\udfff]")

# True while a file is read: over-long text is refused. Otherwise (kdbench building a
# record from a plugin's text) it is truncated.
_READING: contextvars.ContextVar[bool] = contextvars.ContextVar("kdbench_reading", default=False)


@contextlib.contextmanager
def _reading() -> Iterator[None]:
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
            if _SURROGATE.search(value):
                raise ValueError("is not valid Unicode text (it holds a lone surrogate)")
            return value
        value = _SURROGATE.sub("\ufffd", value)
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


class ComponentRef(_Strict):
    """A component used by a run, with the distribution that provided it."""

    name: Name = Field(description="Registered name, e.g. 'kd' or 'timm:vit_small_patch14'.")
    distribution: Name = Field(description="Python distribution that registered it.")
    version: Name = Field(description="Version of that distribution.")
    description: Text | None = Field(None, description="One line, from the plugin (untrusted).")
    url: Text | None = Field(None, description="Project page, http(s) only.")
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


class ErrorInfo(_Strict):
    type: Name
    message: Text


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
        dupes = sorted(n for n, k in Counter(names).items() if k > 1)
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


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"the number {token[:40]} is out of range for a record")
    return value


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


def _field_name(parts: Iterable[object]) -> str:
    """A field's path as ``method.name`` or ``metrics.0.value``, safe to print and encode."""
    from kdbench.terminal import printable

    return ".".join(printable(str(p)) for p in parts) or "(record)"


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")
# An escape that may spell half of a surrogate pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _too_deep(text: str) -> bool:
    """Whether the JSON ``text`` nests more than :data:`MAX_DEPTH` levels (found without
    parsing it, so without recursion)."""
    depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _surrogate_field(data: Any) -> str | None:
    """The field of the first string (value or key) that is not valid Unicode, if any."""
    stack: list[tuple[Any, tuple[object, ...]]] = [(data, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return _field_name(where)
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return _field_name((*where, key))
                stack.append((item, (*where, key)))
        elif isinstance(value, list):
            stack.extend((item, (*where, i)) for i, item in enumerate(value))
    return None


def _problems_from(path: Path, error: ValidationError) -> list[Problem]:
    out = []
    for item in error.errors():
        out.append(Problem(path, _field_name(item["loc"]), item["msg"]))
    return out


def migrate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring a record dict to :data:`SCHEMA_VERSION` or raise :class:`RecordError`."""
    version = data.get("schema_version")
    if type(version) is not int:
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


def _file_problem(path: Path, message: str) -> RecordError:
    return RecordError(path, [Problem(path, "(file)", message)])


def parse_record(text: str, path: Path) -> Record:
    """Parse and validate a record's JSON text strictly (see the module's docstring)."""
    if _too_deep(text):
        raise _file_problem(path, f"nested more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except _DuplicateKey as error:
        field = _field_name([error.key])
        message = "appears twice in one object (which of the two counts would be ambiguous)"
        raise RecordError(path, [Problem(path, field, message)]) from None
    except RecursionError:
        raise _file_problem(path, f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:
        raise _file_problem(path, f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise _file_problem(path, "a record is a JSON object")
    # text decoded from UTF-8 holds no surrogate, so only an escape (\\udxxx) can add one
    field = _surrogate_field(data) if _SURROGATE_ESCAPE.search(text) else None
    if field is not None:
        message = "is not valid Unicode text (a lone surrogate)"
        raise RecordError(path, [Problem(path, field, message)])
    data = migrate(data, path)
    try:
        with _reading():
            return Record.model_validate(data, strict=True)
    except ValidationError as error:
        raise RecordError(path, _problems_from(path, error)) from None


def parse_record_bytes(raw: bytes, path: Path) -> Record:
    """:func:`parse_record` of a file's bytes, which must be UTF-8."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _file_problem(path, "is UTF-16 text; records are UTF-8 JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _file_problem(
            path, f"not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start})"
        ) from None
    return parse_record(text, path)


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def read_record_bytes(path: str | Path) -> bytes:
    """The bytes of a record file, read without following a link or blocking on a pipe.

    Raises :class:`RecordError` for a symbolic link, anything but a regular file, and a file
    over :data:`MAX_RECORD_BYTES`.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise _file_problem(path, "no such file or folder") from None
    except OSError as error:
        raise _file_problem(path, f"cannot be read: {error.strerror or error}") from None
    too_big = f"cannot be read: over the limit of {MAX_RECORD_BYTES} bytes for a record"
    if stat.S_ISLNK(info.st_mode):
        raise _file_problem(
            path, "cannot be read: it is a symbolic link, and links are not followed"
        )
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise _file_problem(path, f"cannot be read: it is {kind}, not a regular file")
    if info.st_size > MAX_RECORD_BYTES:
        raise _file_problem(path, too_big)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise _file_problem(path, f"cannot be read: {error.strerror or error}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            info.st_dev,
            info.st_ino,
        ):
            raise _file_problem(path, "cannot be read: it changed while it was being opened")
        chunks = []
        size = 0
        while size <= MAX_RECORD_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_RECORD_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise _file_problem(path, f"cannot be read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if size > MAX_RECORD_BYTES:
        raise _file_problem(path, too_big)
    return b"".join(chunks)


def load_record(path: str | Path) -> Record:
    """Read, migrate and validate one record file."""
    path = Path(path)
    return parse_record_bytes(read_record_bytes(path), path)


def dump_record(record: Record) -> str:
    data = record.model_dump(mode="json")
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_record(record: Record, path: str | Path) -> Path:
    """Validate ``record`` and write it atomically to ``path``."""
    path = Path(path)
    record = Record.model_validate(record.model_dump())
    atomic_write_text(path, dump_record(record))
    return path


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _odd_name(name: str) -> str | None:
    """Why a file name cannot be a record's (a site path, a manifest line), if it cannot."""
    if _SURROGATE.search(name):
        return "the name is not valid UTF-8; rename it"
    if _CONTROL.search(name):
        return "the name holds a control character (a line break?); rename it"
    return None


def _display_name(name: str) -> str:
    """A file name with bytes that are not UTF-8 written as ``\\xff``, controls as ``\\x0a``."""
    from kdbench.terminal import printable

    return printable(os.fsencode(name).decode("utf-8", "backslashreplace"))


def find_record_files(
    paths: Iterable[str | Path], *, skip: Path | None = None
) -> tuple[list[Path], list[Problem]]:
    """Every ``*.json`` under the given files and folders, sorted, each once; and a problem
    for each folder that cannot be searched.

    Hidden entries (``.name``) are left out. Links are never followed below a folder given
    here: a link named ``*.json`` is listed (reading it is refused), a link to a folder is a
    problem. So are unreadable folders, and names that are not valid UTF-8 or hold a control
    character. ``skip`` is a
    folder not to search (a site built inside its records folder).
    """
    files: list[Path] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    skipped = os.path.realpath(skip) if skip is not None else None
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            if root not in seen:
                seen.add(root)
                files.append(root)
            continue
        found: list[Path] = []
        folders = [root]
        while folders:
            folder = folders.pop()
            if skipped is not None and os.path.realpath(folder) == skipped:
                continue
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as error:
                message = f"cannot be read: {error.strerror or error}"
                problems.append(Problem(folder, "(folder)", message))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = folder / entry.name
                is_json = entry.name.endswith(".json")
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_link = entry.is_symlink()
                    link_to_dir = is_link and not is_json and entry.is_dir()
                except OSError as error:
                    problems.append(Problem(path, "(file)", f"cannot be read: {error}"))
                    continue
                odd = _odd_name(entry.name)
                if odd and (is_json or is_dir or link_to_dir):
                    problems.append(Problem(folder / _display_name(entry.name), "(file)", odd))
                    continue
                if link_to_dir:
                    message = "is a symbolic link to a folder, and links are not followed"
                    problems.append(Problem(path, "(folder)", message))
                    continue
                if is_dir:
                    folders.append(path)
                if is_json:
                    found.append(path)
        for path in sorted(found):
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files, problems


def iter_record_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every ``*.json`` under the given files and folders (see :func:`find_record_files`)."""
    yield from find_record_files(paths)[0]


def validate_paths(paths: Iterable[str | Path]) -> tuple[int, list[Problem]]:
    """Check every record under ``paths``; returns (files checked, problems).

    A folder that cannot be searched is a problem too, so it is never silently skipped.
    """
    files, problems = find_record_files(paths)
    for f in files:
        try:
            load_record(f)
        except RecordError as error:
            problems.extend(error.problems)
    return len(files), problems

"""What a protocol is: a name, an integer version, a config per suite, declared metrics with
a direction, and ``run(context) -> UnitResult`` for one method and one seed."""

from __future__ import annotations

import copy
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from kdbench.errors import ConfigError
from kdbench.protocols.configs.model import check_config
from kdbench.registry import Component, Registry
from kdbench.results import ComponentRef, DatasetIdentity, Metric, MetricFamily, MetricSpec
from kdbench.subjects import Subject, subject_of

SUITES = ("embedded", "standard")


@dataclass
class UnitContext:
    """Everything a protocol's ``run`` gets for one unit (one method, one seed)."""

    protocol: Protocol
    method: Component
    seed: int
    suite: str
    smoke: bool
    config: dict[str, Any]
    registry: Registry
    device: str
    cache_dir: Path
    work_dir: Path
    progress: Callable[..., Any]
    log: Callable[[str], None] = print


@dataclass
class UnitResult:
    """What a protocol returns; the runner adds provenance and writes the record."""

    metrics: list[Metric]
    dataset: DatasetIdentity
    components: dict[str, ComponentRef] = field(default_factory=dict)
    draws: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    train_seconds: float | None = None
    eval_seconds: float | None = None
    device_fingerprint: dict[str, Any] | None = None


class Protocol(ABC):
    """Base class for protocols. Subclasses set the class attributes and implement
    :meth:`default_config` and :meth:`run`."""

    name: ClassVar[str]
    version: ClassVar[int]
    description: ClassVar[str] = ""
    explanation: ClassVar[str] = ""
    """What the protocol measures and why, for a reader of the leaderboard: short paragraphs
    (blank-line separated; ``- `` bullet lists, `` `code` `` and ``**bold**`` allowed). The
    site opens the protocol's page with it; a built-in protocol's
    ``docs/protocols/<name>.md`` holds the same text under "What it measures" (a test
    keeps the two equal)."""
    suites: ClassVar[tuple[str, ...]] = SUITES
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    unsupported: ClassVar[dict[Subject, str]] = {}
    """Subjects (see :mod:`kdbench.subjects`) this protocol cannot score, with the reason
    (``{method}`` is replaced by the method's name)."""
    teacher_space: ClassVar[str] = "backbone"
    """What the teacher's pooled output is to the losses: ``backbone`` (its own embedding)
    or ``joint`` (an image–text space narrower than its layers)."""
    config_models: ClassVar[Mapping[str, type[BaseModel]]] = {}
    """The pydantic model of the config, per suite (see :mod:`kdbench.protocols.configs`):
    a run's config is checked through it when the run is planned. A suite without one is
    not checked beyond its keys."""
    metric_families: ClassVar[tuple[MetricFamily, ...]] = ()
    """Metrics named after an open set of members (a fixed name in ``metrics`` wins)."""
    student_key: ClassVar[str | None] = None
    """The dotted config key of the student (``{name, options}``) the protocol trains or
    measures, which ``kdbench run --student`` and a method's declared student set; ``None``
    if the protocol has no student."""
    exclusive_machine: ClassVar[bool] = False
    """Whether its figures are only comparable from a machine the unit has to itself
    (latency, energy): ``slurm`` then asks for an exclusive node, and an executor that runs
    units side by side refuses it unless told otherwise."""

    quantisable: ClassVar[bool] = False
    """Whether the protocol scores a student at another precision than fp32 (``kdbench run
    --precision``): such a unit's config gains a ``precision`` section
    (:meth:`with_precision`) and its record the figures of
    :mod:`kdbench.quantization.scoring`."""

    teacher_key: ClassVar[str | None] = None
    """The dotted config key of the teacher (``{name, options}``), which ``kdbench run
    --teacher`` sets; ``None`` if the protocol has no teacher."""
    transfer_key: ClassVar[str | None] = None
    """The top-level config key naming the transfer set (``kdbench ls transfer_sets``) every
    method of a run distils on instead of its recipe's; ``None`` if the protocol has no
    transfer set. Optional: left out of the config (and its hash) when not set."""

    def data_sections(self, config: dict[str, Any], subject: Subject) -> dict[str, dict[str, Any]]:
        """The config sections naming a dataset (``{"dataset", "root", ...}``) that a unit
        scoring ``subject`` reads, by dotted key (without the protocol's name): every one
        by default. A unit's record path and the checks before a run start come from these."""
        from kdbench.unit_place import dataset_sections

        return dataset_sections(config)

    def machine(self, config: dict[str, Any], device: str) -> str | None:
        """The machine a unit's figures are tied to (a device fingerprint id), when they
        depend on it; its record then lives in a folder of that name. ``None`` by default."""
        return None

    def with_teacher(self, config: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """``config`` with its teacher replaced by ``spec`` (``{name, options}``)."""
        if self.teacher_key is None:
            return config
        from kdbench.unit_place import with_spec

        return with_spec(config, self.teacher_key, spec)

    def student_of(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The student spec in ``config`` (at :attr:`student_key`), if the protocol has one."""
        if self.student_key is None:
            return None
        node: Any = config
        for part in self.student_key.split("."):
            node = node[part]
        return node

    def with_student(
        self, config: dict[str, Any], name: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``config`` with its student replaced by the registered student ``name`` (with
        ``options``, added to the config's own when ``name`` is already the student);
        unchanged (the same object) when ``name`` is already the student and no options
        are given."""
        spec = self.student_of(config)
        if spec is None or (spec["name"] == name and not options):
            return config
        config = copy.deepcopy(config)
        *parents, last = (self.student_key or "").split(".")
        node = config
        for part in parents:
            node = node[part]
        base = dict(spec["options"]) if spec["name"] == name else {}
        node[last] = {"name": name, "options": {**base, **(options or {})}}
        return config

    def with_precision(self, config: dict[str, Any], name: str, smoke: bool) -> dict[str, Any]:
        """``config`` scored at the precision ``name``: unchanged for fp32, else with a
        ``precision`` section. :class:`ConfigError` when the protocol cannot."""
        from kdbench.quantization.precisions import parse_precision
        from kdbench.quantization.scoring import precision_section

        if parse_precision(name).is_fp32:
            return config
        if not self.quantisable:
            raise ConfigError(
                f"protocol {self.name!r} does not score quantised students yet (a protocol "
                "that does declares `quantisable`); it runs at fp32 only"
            )
        return {**config, "precision": precision_section(name, smoke)}

    @abstractmethod
    def default_config(self, suite: str, smoke: bool) -> dict[str, Any]:
        """The configuration for ``suite``; ``smoke`` shrinks it to seconds."""

    @abstractmethod
    def run(self, context: UnitContext) -> UnitResult:
        """Run one unit and return its measurements."""

    def supports(
        self, method: Component, registry: Registry | None = None, student: str | None = None
    ) -> str | None:
        """``None`` if ``method`` can run here (with the registered ``student``, if given),
        else the reason it cannot: the protocol refuses subjects it cannot score, then the
        method may refuse the protocol or the student."""
        obj = method.load()
        reason = self.unsupported.get(subject_of(obj))
        if reason is not None:
            return reason.format(method=method.name)
        own = getattr(obj, "supports", None)
        if not callable(own):
            return None
        if "student" in inspect.signature(own).parameters:
            return own(self, student=student)
        return own(self)

    def supports_student(
        self, method: Component, registry: Registry | None, student: str | None
    ) -> str | None:
        """:meth:`supports`, told the student only when it takes one (a plugin's protocol
        may override ``supports`` with the older signature)."""
        if "student" in inspect.signature(self.supports).parameters:
            return self.supports(method, registry, student=student)
        return self.supports(method, registry)

    def metric(self, name: str) -> MetricSpec:
        """The spec of ``name``: a fixed metric, else a member of a metric family."""
        for spec in self.metrics:
            if spec.name == name:
                return spec
        for family in self.metric_families:
            member = family.member_of(name)
            if member is not None:
                return family.spec(member)
        raise KeyError(f"protocol {self.name!r} declares no metric {name!r}")

    def declares(self, name: str) -> bool:
        """Whether ``name`` is one of this protocol's metrics (fixed or of a family)."""
        try:
            self.metric(name)
        except KeyError:
            return False
        return True

    @property
    def headline(self) -> MetricSpec | None:
        return next((m for m in self.metrics if m.headline), None)

    def config(
        self, suite: str, smoke: bool, overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The default config with ``overrides`` (dotted keys) applied, checked through the
        suite's config model and dumped (for the defaults: the default dict unchanged)."""
        if suite not in self.suites:
            raise ConfigError(
                f"protocol {self.name!r} has no {suite!r} suite; it has: {', '.join(self.suites)}"
            )
        where = f"protocol {self.name!r} ({suite})"
        config = copy.deepcopy(self.default_config(suite, smoke))
        optional = self.transfer_key
        if optional is not None:
            config.setdefault(optional, None)
        for key, value in (overrides or {}).items():
            apply_override(config, key, value, where=where, prefix=self.name)
        if optional is not None and config.get(optional) is None:
            del config[optional]
        model = self.config_models.get(suite)
        if model is None:
            return config
        return check_config(model, config, key=self.name, where=where)


_instances: dict[int, Protocol] = {}


def load_protocol(component: Component) -> Protocol:
    """The protocol object of a registered component (classes are instantiated once)."""
    obj = component.load()
    if isinstance(obj, type):
        key = id(obj)
        if key not in _instances:
            _instances[key] = obj()
        obj = _instances[key]
    if not isinstance(obj, Protocol):
        raise TypeError(
            f"protocol {component.name!r} from {component.distribution} is a "
            f"{type(obj).__name__}, not a kdbench Protocol"
        )
    return obj


def apply_override(
    config: dict[str, Any], key: str, value: Any, where: str, prefix: str = ""
) -> None:
    """Set ``config[a][b] = value`` for ``key='a.b'``; unknown keys are refused (named with
    ``prefix``, the protocol's name, as ``--set`` takes them)."""
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts):
        free = "options" in parts[:i]  # a factory's or loader's keyword options: any key
        opens = part == "options" and isinstance(node, dict) and "dataset" in node
        if isinstance(node, dict) and part not in node and (free or opens):
            node[part] = value if i == len(parts) - 1 else {}
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a section)"
            named = ".".join([prefix, *parts[: i + 1]] if prefix else parts[: i + 1])
            hint = ""
            if isinstance(node, dict) and "dataset" in node:
                section = ".".join([prefix, *parts[:i]] if prefix else parts[:i])
                hint = (
                    f"; options of the {node['dataset']} loader go under {section}.options, "
                    f"e.g. --set {section}.options.{part}=VALUE"
                )
            raise ConfigError(f"{where}: no config key {named!r}; keys here: {known}{hint}")
        if i == len(parts) - 1:
            node[part] = copy.deepcopy(value)  # a value shared by protocols stays theirs
        else:
            node = node[part]


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=3", "name=x"]`` -> ``{"a.b": 3, "name": "x"}``; values are JSON when they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--set {item!r}: expected PROTOCOL.KEY=VALUE, e.g. --set distill.student_epochs=5"
            )
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out

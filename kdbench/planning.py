"""Planning a run: the protocol x method x student x seed units (:class:`Unit`) that a
``kdbench run`` asks for, each with the config it will run with and the path of its record,
and the rows that cannot run with the reason (:func:`plan`). :mod:`kdbench.runner` runs
them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.protocols.base import ConfigError, Protocol, load_protocol
from kdbench.registry import Component, Registry
from kdbench.results import Record, config_hash
from kdbench.subjects import Subject, subject_of
from kdbench.unit_place import merged_spec, parse_model_spec, spec_at


@dataclass
class Unit:
    """One protocol x method x seed, with the config it will run with."""

    protocol: Component
    method: Component
    seed: int
    suite: str
    smoke: bool
    config: dict[str, Any]
    student: str | None = None
    """The unit's student when it is not the protocol's default one (it then names the
    unit and its record file), else ``None``."""
    place: tuple[str, ...] = ()
    """Folders between ``<suite>/<protocol>/`` and the record: the unit's data, models and
    device when they are not the defaults (:func:`kdbench.unit_place.place_units`)."""

    @property
    def precision(self) -> str | None:
        """The precision the unit scores at when it is not fp32 (its config's ``precision``
        section names it; it then names the unit and its record file), else ``None``."""
        section = self.config.get("precision")
        return section["name"] if section else None

    @property
    def row(self) -> str:
        """The method, the student when it is not the default and the precision when it is
        not fp32: ``kd@shapes-resnet12~int8``."""
        return (
            self.method.name
            + (f"@{self.student}" if self.student else "")
            + (f"~{self.precision}" if self.precision else "")
        )

    @property
    def label(self) -> str:
        return f"{self.protocol.name}/{self.row}/seed{self.seed}"

    def _stem(self) -> str:
        row = self.method.name
        if self.student:
            row += "@" + re.sub(r"[^A-Za-z0-9._-]+", "_", self.student)
        if self.precision:
            row += f"~{self.precision}"
        return f"{row}-seed{self.seed}"

    def record_path(self, out: Path) -> Path:
        suffix = ".smoke" if self.smoke else ""
        folder = out.joinpath(self.suite, self.protocol.name, *self.place)
        return folder / f"{self._stem()}{suffix}.json"

    def failed_path(self, out: Path) -> Path:
        """Where a failed attempt is recorded: never over a finished record."""
        path = self.record_path(out)
        return path.with_name(path.name.removesuffix(".json") + ".failed.json")

    def work_dir(self, out: Path) -> Path:
        suffix = "-smoke" if self.smoke else ""
        folder = out.joinpath(".work", self.suite, self.protocol.name, *self.place)
        return folder / f"{self._stem()}{suffix}"

    def matches(self, record: Record) -> bool:
        """Whether ``record`` is a finished run of exactly this unit."""
        proto: Protocol = load_protocol(self.protocol)
        return (
            record.status == "ok"
            and record.protocol.version == proto.version
            and record.protocol.config_hash == config_hash(self.config)
            and record.method.version == self.method.version
            and record.smoke == self.smoke
        )


def default_methods(registry: Registry) -> list[str]:
    """The methods ``kdbench run`` uses when none are named: those kdbench ships, less the
    ones that ask to be named (``Method.in_default_run``: QAT is scored at a precision the
    default run does not use; agnostic is a transfer-set study's baseline)."""
    return [
        c.name
        for c in registry.components("methods")
        if c.distribution == "kdbench" and getattr(c.load(), "in_default_run", True)
    ]


def plan(
    registry: Registry,
    *,
    protocols: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    suite: str = "embedded",
    smoke: bool = False,
    overrides: dict[str, Any] | None = None,
    students: Sequence[str] | None = None,
    teacher: str | None = None,
    precisions: Sequence[str] | None = None,
) -> tuple[list[Unit], list[tuple[str, str, str]]]:
    """The units to run, and the (protocol, method, reason) pairs that cannot run.

    ``students`` (registered student names, each optionally with factory options:
    ``NAME[:key=value,...]``) replace each method's student, so the run is method x student
    x seed; without them a method trains the student it declares, or the protocol's
    default. A row that scores the teacher has no student to vary. ``teacher``
    (``NAME[:key=value,...]``, e.g. ``timm:vit_base_patch14_dinov2.lvd142m:weights=w.pt``)
    replaces every protocol's teacher (its options add to the protocol's own when it names
    the same model); ``overrides`` then apply on top. ``precisions`` (default fp32 alone)
    score each unit at each precision (``int8``, ``int4-sim``, ...): a unit per precision,
    on the protocols that can (:attr:`Protocol.quantisable`)."""
    protocol_names = list(protocols) if protocols else registry.names("protocols")
    method_names = list(methods) if methods else default_methods(registry)
    proto_components = [registry.get("protocols", n) for n in protocol_names]
    method_components = [registry.get("methods", n) for n in method_names]
    if not proto_components:
        raise ConfigError("no protocols are registered")
    if not method_components:
        raise ConfigError("no methods to run; name one with --method")
    per_protocol: dict[str, dict[str, Any]] = {p.name: {} for p in proto_components}
    if teacher is not None:
        teacher_spec = parse_model_spec(teacher)
        registry.get("teachers", teacher_spec["name"])  # unknown: fails with a suggestion
        for pc in proto_components:
            proto = load_protocol(pc)
            if proto.teacher_key is not None:
                default = spec_at(proto.default_config(suite, smoke), proto.teacher_key)
                per_protocol[pc.name][proto.teacher_key] = merged_spec(teacher_spec, default)
    for key, value in (overrides or {}).items():
        head, sep, rest = key.partition(".")
        if not sep or head not in per_protocol:
            first = proto_components[0]
            example = example_key(load_protocol(first), suite, smoke)
            raise ConfigError(
                f"--set {key}: start the key with a protocol being run "
                f"({', '.join(per_protocol)}), e.g. --set {first.name}.{example}"
            )
        per_protocol[head][rest] = value
    student_specs = {
        spec["name"]: spec["options"] for spec in map(parse_model_spec, students or ())
    }
    students = list(student_specs) or None
    declared = [getattr(m.load(), "student", None) for m in method_components]
    for name in [*(students or ()), *declared]:
        if name is not None:
            registry.get("students", name)  # an unknown name fails here, with a suggestion
    from kdbench.quantization.precisions import parse_precisions

    precision_names = [p.name for p in parse_precisions(list(precisions) if precisions else None)]
    units: list[Unit] = []
    unsupported: list[tuple[str, str, str]] = []
    for pc, precision in itertools.product(proto_components, precision_names):
        proto: Protocol = load_protocol(pc)
        config = proto.config(suite, smoke, per_protocol[pc.name])
        try:
            config = proto.with_precision(config, precision, smoke)
        except ConfigError as error:
            unsupported.append((pc.name, f"~{precision}", str(error)))
            continue
        default = proto.student_of(proto.default_config(suite, smoke))
        in_use = students or _students_in_use(method_components)
        for mc in method_components:
            for student in _students_of(proto, mc, students, in_use):
                options = student_specs.get(student) if student else None
                unit_config = proto.with_student(config, student, options) if student else config
                spec = proto.student_of(unit_config)
                row = mc.name + (f"@{student}" if student else "")
                reason = proto.supports_student(mc, registry, spec["name"] if spec else None)
                if reason is not None:
                    unsupported.append((pc.name, row, reason))
                    continue
                own = None
                if spec and default and spec["name"] != default["name"]:
                    own = spec["name"] if subject_of(mc.load()) is not Subject.TEACHER else None
                for seed in seeds:
                    units.append(Unit(pc, mc, int(seed), suite, smoke, unit_config, own))
    return units, unsupported


def example_key(proto: Protocol, suite: str, smoke: bool) -> str:
    """A real ``KEY=VALUE`` of ``proto``'s config for messages: its first integer (top-level
    keys first, then sections)."""
    sections: list[tuple[str, dict[str, Any]]] = [("", proto.default_config(suite, smoke))]
    while sections:
        prefix, node = sections.pop(0)
        for key, value in node.items():
            if isinstance(value, int) and not isinstance(value, bool):
                return f"{prefix}{key}={value}"
            if isinstance(value, dict):
                sections.append((f"{prefix}{key}.", value))
    return "KEY=VALUE"


def _students_in_use(methods: Sequence[Component]) -> list[str | None]:
    """The students the run's trained rows use (``None``: the default), in order."""
    trained = [m.load() for m in methods]
    trained = [m for m in trained if subject_of(m) not in (Subject.TEACHER, Subject.STUDENT)]
    return list(dict.fromkeys(getattr(m, "student", None) for m in trained)) or [None]


def _students_of(
    proto: Protocol,
    method: Component,
    students: Sequence[str] | None,
    in_use: Sequence[str | None],
) -> list[str | None]:
    """The students ``method`` runs with on ``proto`` (``None``: the config's own): the
    ``--student`` list, else the one the method declares; the row of the student as shipped
    (the ``student`` reference row, and what ``device`` measures) covers every student
    ``in_use`` in the run."""
    obj = method.load()
    subject = subject_of(obj)
    if proto.student_key is None or subject is Subject.TEACHER:
        return [None]
    if students:
        return list(dict.fromkeys(students))
    if subject is Subject.STUDENT:
        return list(in_use)
    return [getattr(obj, "student", None)]

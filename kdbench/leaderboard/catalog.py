"""What the site says beyond the records: the installed protocols' explanations, metric
descriptions and default data and models, and whether a method applies to a protocol.

Records carry each metric's unit and direction but not its description, and they cannot
say why a method has no record of a protocol. Both come from the components registered
where the site is built (:meth:`Catalog.from_registry`); a protocol or method that is not
installed there is simply not explained, never guessed at.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdbench.protocols.base import Protocol
    from kdbench.registry import Registry

#: Units in words, for the legends.
UNIT_WORDS: dict[str, str] = {
    "%": "percent",
    "s": "seconds",
    "ms": "milliseconds",
    "M": "millions",
    "GFLOPs": "10⁹ floating-point operations",
    "GMACs": "10⁹ multiply-accumulates",
    "MB": "megabytes (10⁶ bytes)",
    "W": "watts",
    "mJ/image": "millijoules per image",
    "images/s": "images per second",
}

#: The dataset a protocol section reads when it names none (the embedded Shapes world).
DEFAULT_DATASET = "shapes"


@dataclass(frozen=True)
class MetricInfo:
    """What a metric column means: its description (None when the protocol is not
    installed or does not declare it), unit and direction."""

    name: str
    description: str | None
    unit: str | None
    higher_is_better: bool

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def unit_text(self) -> str:
        """The unit and its meaning in words: ``ms (milliseconds)``; ``no unit``."""
        if not self.unit:
            return "no unit"
        words = UNIT_WORDS.get(self.unit)
        return f"{self.unit} ({words})" if words else self.unit

    @property
    def tooltip(self) -> str:
        """One line for a header's ``title``: description, unit, direction."""
        parts = [self.description or "no description", self.unit_text, self.direction]
        return " · ".join(parts)


@dataclass(frozen=True)
class SuiteSetup:
    """The data and models a protocol's default configuration uses in one suite."""

    datasets: tuple[str, ...]
    teachers: tuple[str, ...]
    students: tuple[str, ...]


@dataclass(frozen=True)
class ProtocolInfo:
    """An installed protocol as the site explains it."""

    name: str
    version: int
    description: str
    explanation: str
    setups: dict[str, SuiteSetup] = field(default_factory=dict)


def _walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield str(k), v
            yield from _walk(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def suite_setup(config: Mapping[str, Any]) -> SuiteSetup:
    """The datasets, teachers and students a protocol config names, in order of first
    mention; a config that names no dataset reads the Shapes world."""
    datasets: dict[str, None] = {}
    teachers: dict[str, None] = {}
    students: dict[str, None] = {}
    for key, value in _walk(config):
        if key == "dataset" and isinstance(value, str):
            datasets[value] = None
        elif key in ("teacher", "student") and isinstance(value, Mapping):
            name = value.get("name")
            if isinstance(name, str):
                (teachers if key == "teacher" else students)[name] = None
    return SuiteSetup(tuple(datasets) or (DEFAULT_DATASET,), tuple(teachers), tuple(students))


class Catalog:
    """The installed protocols and methods, as far as the site needs them."""

    def __init__(
        self, protocols: Mapping[str, Protocol] | None = None, registry: Registry | None = None
    ):
        self._protocols = dict(protocols or {})
        self._registry = registry
        self._about: dict[str, ProtocolInfo] = {}
        self._applies: dict[tuple[str, str, str | None], str | None] = {}

    @classmethod
    def from_registry(cls, registry: Registry | None = None) -> Catalog:
        """Every protocol registered in this process (``registry`` by default the one the
        installed plugins make); one that fails to load is left out."""
        from kdbench.plugins import get_registry
        from kdbench.protocols.base import load_protocol

        registry = registry or get_registry()
        protocols = {}
        for component in registry.components("protocols"):
            try:
                protocols[component.name] = load_protocol(component)
            except Exception:  # a broken plugin is reported by `kdbench plugins`, not here
                continue
        return cls(protocols, registry)

    @property
    def protocol_names(self) -> list[str]:
        return sorted(self._protocols)

    def about(self, protocol: str) -> ProtocolInfo | None:
        """The explanation of an installed protocol, with its default data and models."""
        if protocol in self._about:
            return self._about[protocol]
        proto = self._protocols.get(protocol)
        if proto is None:
            return None
        setups = {}
        for suite in proto.suites:
            try:
                setups[suite] = suite_setup(proto.default_config(suite, False))
            except Exception:  # a plugin's config that cannot be made: no setup shown
                continue
        info = ProtocolInfo(
            name=protocol,
            version=int(proto.version),
            description=str(proto.description or ""),
            explanation=str(getattr(proto, "explanation", "") or ""),
            setups=setups,
        )
        self._about[protocol] = info
        return info

    def metric(
        self, protocol: str, name: str, unit: str | None, higher_is_better: bool
    ) -> MetricInfo:
        """What the column ``name`` of ``protocol`` means; its unit and direction are the
        records' own, the description the installed protocol's."""
        description = None
        proto = self._protocols.get(protocol)
        if proto is not None:
            try:
                description = proto.metric(name).description or None
            except KeyError:
                description = None
        return MetricInfo(name, description, unit, higher_is_better)

    def not_applicable(self, method: str, protocol: str, student: str | None) -> str | None:
        """Why ``protocol`` refuses ``method`` (with ``student``), or None when it accepts
        it or the method or protocol is not installed here (then nobody can tell)."""
        key = (method, protocol, student)
        if key not in self._applies:
            self._applies[key] = self._refusal(method, protocol, student)
        return self._applies[key]

    def _refusal(self, method: str, protocol: str, student: str | None) -> str | None:
        proto = self._protocols.get(protocol)
        if proto is None or self._registry is None:
            return None
        try:
            component = self._registry.get("methods", method)
            return proto.supports_student(component, self._registry, student)
        except Exception:  # not installed, or a plugin that cannot answer: unknown
            return None

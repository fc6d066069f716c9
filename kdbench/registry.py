"""The component registry: every teacher, student, adapter, loss, method, dataset, confuser
source, sensor, protocol, executor and transfer set known to this process, with the
distribution that provided it.

Plugins never touch a :class:`Registry` directly: their hooks receive a :class:`Register`
callable bound to their kind and distribution (see :mod:`kdbench.hookspecs`).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kdbench.errors import ComponentCollisionError, RegistryError, UnknownComponentError

KINDS: tuple[str, ...] = (
    "teachers",
    "students",
    "adapters",
    "losses",
    "methods",
    "datasets",
    "confusers",
    "sensors",
    "protocols",
    "executors",
    "transfer_sets",
)
"""Every kind of component; each has one ``kdbench_register_<kind>`` hook in
:mod:`kdbench.hookspecs`."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(:\*)?$")


@dataclass(frozen=True)
class Provider:
    """Who registered a component: a plugin and the distribution it ships in."""

    plugin: str
    distribution: str
    version: str


@dataclass
class Component:
    """One registered component. ``load()`` returns the object, importing it if needed."""

    kind: str
    name: str
    target: Any
    provider: Provider
    description: str = ""
    url: str | None = None
    family_member: str | None = None
    _loaded: Any = field(default=None, repr=False)

    @property
    def distribution(self) -> str:
        return self.provider.distribution

    @property
    def version(self) -> str:
        return self.provider.version

    def load(self) -> Any:
        """The component object; import paths are imported once, families bound to the name."""
        if self._loaded is None:
            obj = _import_target(self.target) if isinstance(self.target, str) else self.target
            if self.family_member is not None:
                obj = functools.partial(obj, self.family_member)
            self._loaded = obj
        return self._loaded

    def ref(self) -> dict[str, str]:
        """``{name, distribution, version}``, as stored in result records."""
        return {"name": self.name, "distribution": self.distribution, "version": self.version}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "plugin": self.provider.plugin,
            "description": self.description,
            "url": self.url,
        }


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise RegistryError(f"import path {target!r} must look like 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _default_name(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj.partition(":")[2].rsplit(".", 1)[-1] or None
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    return getattr(obj, "__name__", None)


def _default_description(obj: Any) -> str:
    if isinstance(obj, str):
        return ""
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text:
        text = inspect.getdoc(obj) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def singular(kind: str) -> str:
    """'losses' -> 'loss', 'methods' -> 'method'."""
    return kind[:-2] if kind.endswith("sses") else kind[:-1]


def _check_name(name: object, kind: str, provider: Provider) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RegistryError(
            f"{provider.distribution} registers {singular(kind)} {name!r}: names are letters, "
            "digits, '-', '_' and '.' (a family ends with ':*')"
        )


class Registry:
    """Components by kind and name. Collisions are errors; unknown names suggest near ones."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    def add(self, component: Component) -> None:
        self.add_all([component])

    def add_all(self, components: list[Component]) -> None:
        """Add every component or, when one has a bad name or collides, none of them."""
        staged: dict[tuple[str, str], Component] = {}
        for component in components:
            table = self._check_kind(component.kind)
            _check_name(component.name, component.kind, component.provider)
            existing = staged.get((component.kind, component.name)) or table.get(component.name)
            if existing is not None:
                raise ComponentCollisionError(
                    f"two plugins register the {singular(component.kind)} {component.name!r}: "
                    f"{existing.distribution} {existing.version} "
                    f"(plugin {existing.provider.plugin}) and {component.distribution} "
                    f"{component.version} (plugin {component.provider.plugin}); uninstall one "
                    "of them or rename"
                )
            staged[(component.kind, component.name)] = component
        for (kind, name), component in staged.items():
            self._items[kind][name] = component

    def get(self, kind: str, name: str) -> Component:
        """The component called ``name``; ``timm:x`` style names resolve through families."""
        table = self._check_kind(kind)
        if name in table and not name.endswith(":*"):
            return table[name]
        prefix, sep, member = name.partition(":")
        family = table.get(f"{prefix}:*") if sep and member and member != "*" else None
        if family is not None:
            return Component(
                kind=kind,
                name=name,
                target=family.target,
                provider=family.provider,
                description=family.description,
                url=family.url,
                family_member=member,
            )
        known = sorted(table)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(known) if known else "none registered"
        raise UnknownComponentError(
            f"unknown {singular(kind)} {name!r}.{hint} Registered {kind}: {listing}. "
            "`kdbench ls` lists every component."
        )

    def names(self, kind: str) -> list[str]:
        return sorted(self._check_kind(kind))

    def components(self, kind: str | None = None) -> Iterator[Component]:
        kinds = KINDS if kind is None else (kind,)
        for k in kinds:
            table = self._check_kind(k)
            for name in sorted(table):
                yield table[name]

    def _check_kind(self, kind: str) -> dict[str, Component]:
        try:
            return self._items[kind]
        except KeyError:
            raise RegistryError(
                f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}"
            ) from None


class Register:
    """The callable a hook receives: ``register(obj, name=None, description=None, url=None)``.

    Bound to one kind and one provider; components are collected and committed to the
    registry only if the whole hook succeeds, so a hook that raises half-way adds nothing.
    """

    def __init__(self, kind: str, provider: Provider) -> None:
        self.kind = kind
        self.provider = provider
        self.collected: list[Component] = []

    def __call__(
        self,
        obj: Any,
        name: str | None = None,
        description: str | None = None,
        url: str | None = None,
    ) -> None:
        name = name or _default_name(obj)
        if not name:
            raise RegistryError(
                f"{self.provider.distribution}: cannot tell the name of {obj!r}; "
                "pass register(obj, name=...)"
            )
        _check_name(name, self.kind, self.provider)
        if description is not None and not isinstance(description, str):
            raise RegistryError(
                f"{self.provider.distribution} registers {name!r} with a description that is "
                f"a {type(description).__name__}, not text"
            )
        if url is not None and not (isinstance(url, str) and re.match(r"^https?://", url)):
            raise RegistryError(
                f"{self.provider.distribution} registers {name!r} with url {url!r}: "
                "only http(s) URLs are accepted"
            )
        self.collected.append(
            Component(
                kind=self.kind,
                name=name,
                target=obj,
                provider=self.provider,
                description=description if description is not None else _default_description(obj),
                url=url,
            )
        )

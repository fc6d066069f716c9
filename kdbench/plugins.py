"""The plugin manager: loads built-ins and entry-point plugins, builds the registry.

Loading rules
- Built-in components come from :mod:`kdbench.builtins`, registered through the same hooks
  as any plugin (distribution ``kdbench``).
- Plugins are entry points in the group ``kdbench``. One that fails to import, or whose hook
  raises, is reported on stderr naming its distribution and the error and is left out;
  everything else keeps working. ``KDBENCH_STRICT_PLUGINS=1`` makes that an error.
- ``KDBENCH_LOAD_PLUGINS=a,b`` loads only those distributions (``""``: built-ins only).
- Two components of one kind with the same name are an error naming both distributions.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from kdbench import __version__, hookspecs
from kdbench.errors import PluginLoadError
from kdbench.registry import Component, Provider, Register, Registry
from kdbench.terminal import printable

ENTRY_POINT_GROUP = "kdbench"
BUILTIN_PLUGIN = "kdbench.builtins"


@dataclass
class PluginInfo:
    """What ``kdbench plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "error": self.error,
        }


def _normalise(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _strict() -> bool:
    return os.environ.get("KDBENCH_STRICT_PLUGINS", "").lower() in {"1", "true", "yes", "on"}


def _allowlist() -> set[str] | None:
    raw = os.environ.get("KDBENCH_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_normalise(part.strip()) for part in raw.split(",") if part.strip()}


def _warn(message: str) -> None:
    print(f"kdbench: warning: {printable(message, newlines=True)}", file=sys.stderr)


class PluginHost:
    """One plugin manager plus the registry built from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.providers: dict[str, Provider] = {}
        self.failed: list[PluginInfo] = []
        self._registry: Registry | None = None

    # -- loading -----------------------------------------------------------------------
    def add(self, plugin: Any, name: str, distribution: str, version: str) -> None:
        """Register a plugin object or module in-process (tests, notebooks)."""
        self.pm.register(plugin, name=name)
        self.providers[name] = Provider(plugin=name, distribution=distribution, version=version)
        self._registry = None

    def remove(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.providers.pop(name, None)
        self._registry = None

    def _fail(self, info: PluginInfo, error: BaseException) -> None:
        info.error = f"{type(error).__name__}: {error}"
        if _strict():
            raise PluginLoadError(
                f"plugin {info.name!r} from {info.distribution} {info.version} failed: {info.error}"
            ) from error
        _warn(
            f"plugin {info.name!r} from {info.distribution} {info.version} failed to load "
            f"({info.error}); it is skipped. Set KDBENCH_STRICT_PLUGINS=1 to stop instead."
        )
        self.failed.append(info)

    def load_builtins(self) -> None:
        import importlib

        module = importlib.import_module(BUILTIN_PLUGIN)
        self.add(module, BUILTIN_PLUGIN, "kdbench", __version__)

    def load_entry_points(self) -> None:
        allow = _allowlist()
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.name
            version = dist.version if dist is not None else "unknown"
            if allow is not None and _normalise(dist_name) not in allow:
                continue
            seen.add(_normalise(dist_name))
            info = PluginInfo(name=ep.name, distribution=dist_name, version=version)
            if self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                self.add(plugin, ep.name, dist_name, version)
            except Exception as error:
                self._fail(info, error)
        for missing in sorted((allow or set()) - seen):
            _warn(f"KDBENCH_LOAD_PLUGINS names {missing!r}, which is not an installed plugin")

    # -- registry ----------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> Registry:
        registry = Registry()
        for plugin_name, provider in list(self.providers.items()):
            plugin = self.pm.get_plugin(plugin_name)
            collected: list[Component] = []
            try:
                for kind in hookspecs.KINDS:
                    caller = getattr(self.pm.hook, f"kdbench_register_{kind}")
                    for impl in caller.get_hookimpls():
                        if impl.plugin is plugin:
                            register = Register(kind, provider)
                            impl.function(register=register)
                            collected.extend(register.collected)
            except Exception as error:
                self.pm.unregister(name=plugin_name)
                self.providers.pop(plugin_name)
                self._fail(PluginInfo(plugin_name, provider.distribution, provider.version), error)
                continue
            for component in collected:
                registry.add(component)
        return registry

    def infos(self) -> list[PluginInfo]:
        out = []
        for name, provider in self.providers.items():
            plugin = self.pm.get_plugin(name)
            hooks = sorted(
                caller.name
                for caller in self.pm.get_hookcallers(plugin) or []
                if caller.name.startswith("kdbench_")
            )
            out.append(PluginInfo(name, provider.distribution, provider.version, hooks))
        return sorted(out + self.failed, key=lambda p: (p.distribution != "kdbench", p.name))


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        host = PluginHost()
        host.load_builtins()
        host.load_entry_points()
        _host = host
    return _host


def get_registry() -> Registry:
    """The registry of every component available in this process."""
    return get_host().registry


def reset() -> None:
    """Forget the loaded plugins (the next call reloads them, re-reading the environment)."""
    global _host
    _host = None


@contextmanager
def temporary_plugin(
    plugin: Any, name: str = "in-process", distribution: str = "in-process", version: str = "0"
) -> Iterator[Registry]:
    """Register ``plugin`` for the duration of a ``with`` block; yields the new registry."""
    host = get_host()
    host.add(plugin, name, distribution, version)
    try:
        yield host.registry
    finally:
        if host.pm.has_plugin(name):
            host.remove(name)

"""The plugin manager: loads built-ins and entry-point plugins, builds the registry.

Loading rules
- Built-in components come from :mod:`kdbench.builtins`, registered through the same hooks
  as any plugin (distribution ``kdbench``).
- Plugins are entry points in the group ``kdbench``. One that fails to import, whose hook
  raises (anything, ``SystemExit`` and ``KeyboardInterrupt`` included) or registers a bad
  name is disabled with a warning on stderr naming its distribution and the problem;
  everything else keeps working. Only the user's own Ctrl-C (a real SIGINT) stops loading.
- A component name already registered by another plugin, or an entry-point name already
  used by another distribution, disables the plugin that comes later (built-ins first,
  then entry points by name and distribution), with a warning naming both providers.
- ``KDBENCH_STRICT_PLUGINS=1`` turns every one of those warnings into an error.
- ``KDBENCH_LOAD_PLUGINS=a,b`` loads only those distributions (``""``: built-ins only).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from kdbench import __version__, hookspecs
from kdbench.errors import ComponentCollisionError, PluginLoadError
from kdbench.interrupts import watch_interrupts
from kdbench.registry import KINDS, Component, Provider, Register, Registry
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


def _describe(error: BaseException) -> str:
    """``Type: message`` for any exception, even one whose ``str()`` raises."""
    try:
        text = str(error)
    except Exception:
        text = "(its message cannot be shown)"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _installed_entry_points() -> list[tuple[metadata.EntryPoint, str, str]]:
    """(entry point, distribution, version) for every ``kdbench`` entry point, sorted by
    entry-point name and then distribution. A distribution whose metadata cannot be read is
    reported and skipped; of two copies of one distribution, the first on ``sys.path`` wins."""
    found: list[tuple[metadata.EntryPoint, str, str]] = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        try:
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
            if not eps:
                continue
            name = dist.metadata["Name"] or eps[0].name
            version = dist.version or "unknown"
        except Exception as error:
            where = getattr(dist, "_path", "an installed distribution")
            _warn(f"cannot read the plugin metadata of {where} ({_describe(error)}); skipped")
            continue
        if _normalise(name) in seen:
            continue
        seen.add(_normalise(name))
        found.extend((ep, name, version) for ep in eps)
    return sorted(found, key=lambda item: (item[0].name, _normalise(item[1])))


class PluginHost:
    """One plugin manager plus the registry built from it.

    Every step that runs a plugin's code (importing it, calling its hooks, adding what it
    registered) is guarded: whatever it raises, ``SystemExit`` and ``KeyboardInterrupt``
    included, disables that plugin with a warning and nothing else. Only a real Ctrl-C from
    the user stops loading.
    """

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

    def _discard(self, name: str) -> None:
        """Forget a plugin registered under ``name``, however little of it got registered."""
        with suppress(Exception):
            self.pm.unregister(name=name)
        self.providers.pop(name, None)

    def _disable(self, info: PluginInfo, problem: str, error: BaseException) -> None:
        """Leave a plugin out with a warning naming it (strict mode: raise instead)."""
        info.error = problem
        if _strict():
            if isinstance(error, ComponentCollisionError):
                raise error
            raise PluginLoadError(
                f"plugin {info.name!r} from {info.distribution} {info.version}: {problem}"
            ) from error
        _warn(
            f"plugin {info.name!r} from {info.distribution} {info.version} is disabled: "
            f"{problem}. Everything else keeps working; KDBENCH_STRICT_PLUGINS=1 makes this "
            "an error."
        )
        self.failed.append(info)

    def _fail(self, info: PluginInfo, error: BaseException) -> None:
        self._disable(info, f"it failed to load ({_describe(error)})", error)

    def load_builtins(self) -> None:
        import importlib

        module = importlib.import_module(BUILTIN_PLUGIN)
        self.add(module, BUILTIN_PLUGIN, "kdbench", __version__)

    def load_entry_points(self) -> None:
        allow = _allowlist()
        seen: set[str] = set()
        with watch_interrupts() as watch:
            for ep, dist_name, version in _installed_entry_points():
                if allow is not None and _normalise(dist_name) not in allow:
                    continue
                seen.add(_normalise(dist_name))
                info = PluginInfo(name=ep.name, distribution=dist_name, version=version)
                holder = self.providers.get(ep.name)
                if holder is not None:
                    error = ComponentCollisionError(
                        f"two distributions use the plugin entry-point name {ep.name!r}: "
                        f"{holder.distribution} {holder.version} and {dist_name} {version}; "
                        "uninstall one of them or rename its entry point"
                    )
                    self._disable(info, str(error), error)
                    continue
                try:
                    plugin = ep.load()
                    self.add(plugin, ep.name, dist_name, version)
                except BaseException as error:
                    if watch.from_user(error):
                        raise
                    self._discard(ep.name)
                    self._fail(info, error)
        for missing in sorted((allow or set()) - seen):
            _warn(f"KDBENCH_LOAD_PLUGINS names {missing!r}, which is not an installed plugin")

    # -- registry ----------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _collect(self, plugin_name: str, provider: Provider) -> list[Component]:
        """Call one plugin's hooks; what they register, checked but not yet added."""
        plugin = self.pm.get_plugin(plugin_name)
        collected: list[Component] = []
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"kdbench_register_{kind}")
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    register = Register(kind, provider)
                    impl.function(register=register)
                    collected.extend(register.collected)
        return collected

    def _build_registry(self) -> Registry:
        registry = Registry()
        with watch_interrupts() as watch:
            for plugin_name, provider in list(self.providers.items()):
                info = PluginInfo(plugin_name, provider.distribution, provider.version)
                try:
                    registry.add_all(self._collect(plugin_name, provider))
                except ComponentCollisionError as error:
                    self._discard(plugin_name)
                    self._disable(info, str(error), error)
                except BaseException as error:
                    if watch.from_user(error):
                        raise
                    self._discard(plugin_name)
                    self._fail(info, error)
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

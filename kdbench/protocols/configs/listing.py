"""What ``kdbench config PROTOCOL`` prints: a protocol's default config, key by key, with the
type and meaning of each value taken from the protocol's config model."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kdbench.protocols.base import Protocol, load_protocol
from kdbench.protocols.configs.model import describe_type
from kdbench.registry import Registry


@dataclass(frozen=True)
class ConfigEntry:
    """One key of a config: a section (``value`` unused) or a value with its type."""

    key: str
    """Dotted, starting with the protocol's name, as ``--set`` takes it."""
    value: Any
    type: str
    description: str
    section: bool = False


def config_entries(protocol: Protocol, suite: str, smoke: bool = False) -> list[ConfigEntry]:
    """Every key of ``protocol``'s default config for ``suite``, sections before their keys,
    in the order the protocol writes them; descriptions are empty without a config model."""
    config = protocol.config(suite, smoke)
    order = protocol.default_config(suite, smoke)
    entries: list[ConfigEntry] = []
    _walk(config, order, protocol.config_models.get(suite), protocol.name, entries)
    return entries


def _walk(
    values: dict[str, Any],
    order: dict[str, Any],
    model: type[BaseModel] | None,
    prefix: str,
    out: list[ConfigEntry],
) -> None:
    for name in [*order, *(k for k in values if k not in order)]:
        value, key = values[name], f"{prefix}.{name}"
        info = model.model_fields.get(name) if model is not None else None
        text = _clean(info.description) if info is not None else ""
        annotation = info.annotation if info is not None else None
        sub = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        if isinstance(value, dict) and (sub is not None or (info is None and value)):
            about = text or (_clean(sub.__doc__) if sub is not None else "")
            out.append(ConfigEntry(key, None, "section", about, True))
            _walk(value, order.get(name) or {}, sub, key, out)
        else:
            kind = describe_type(info.annotation, info) if info is not None else ""
            out.append(ConfigEntry(key, value, kind, text))


def _clean(text: str | None) -> str:
    return " ".join((text or "").replace("``", "`").split())


def format_config(protocol: Protocol, suite: str, smoke: bool = False) -> str:
    """The text ``kdbench config`` prints: a header, then ``key = value`` lines, each value
    followed by its meaning and type."""
    typed = suite in protocol.config_models
    lines = [
        f"# {protocol.name} (version {protocol.version}), {suite} suite"
        f"{', smoke sizes' if smoke else ''}: the defaults.",
        f"# Change one with: kdbench run --set {protocol.name}.KEY=VALUE (VALUE is JSON).",
    ]
    if not typed:
        lines.append("# This protocol declares no config model: keys are listed without meaning.")
    nested = True
    for entry in config_entries(protocol, suite, smoke):
        top = entry.key.count(".") == 1
        if top and (entry.section or nested):
            lines.append("")
        nested = not top or entry.section
        if entry.section:
            lines.append(f"[{entry.key}]" + (f"  {entry.description}" if entry.description else ""))
            continue
        lines.append(f"{entry.key} = {json.dumps(entry.value)}")
        about = " ".join(
            p for p in (entry.description, f"[{entry.type}]" if entry.type else "") if p
        )
        if about:
            lines.append(
                textwrap.fill(
                    about,
                    96,
                    initial_indent="    ",
                    subsequent_indent="    ",
                    break_on_hyphens=False,
                )
            )
    return "\n".join(lines)


def config_text(
    registry: Registry,
    name: str,
    suite: str = "embedded",
    smoke: bool = False,
    as_json: bool = False,
) -> str:
    """What ``kdbench config NAME`` prints: :func:`format_config`, or with ``as_json`` the
    config exactly as a run would record it."""
    protocol = load_protocol(registry.get("protocols", name))
    if as_json:
        return json.dumps(protocol.config(suite, smoke), indent=2)
    return format_config(protocol, suite, smoke)

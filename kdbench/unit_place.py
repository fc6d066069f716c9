"""Where a unit's record lives, beyond its suite, protocol, method, student and seed: the
data it reads, its models, and (for the ``device`` protocol) the machine it measures.

A unit's *place* is a tuple of folder names between ``<suite>/<protocol>/`` and the record
file, each left out when it is the default, so the embedded suite's records keep their
paths:

- the data: ``<dataset>[+<dataset>...]-<sha256[:12]>`` of the split manifests every dataset
  section reads (left out when every section reads the generated Shapes world);
- the models: ``<teacher>-<sha256[:8]>`` of the teacher spec and the student's options,
  when either differs from the protocol's default for the suite;
- the transfer set: ``transfer-<name>`` when the config names one for every method
  (``--set distill.transfer=NAME``) instead of each recipe's own;
- the device: the device fingerprint id (``cpu-86036630c655e45f``) of the ``device``
  protocol's units, so two machines never share a record file.

:func:`place_units` works out every unit's place before the first unit starts, and checks
on the way everything a unit will read from disk (dataset roots, layouts and loader
options; weights files): one :class:`PlanError` lists every problem at once.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdbench.errors import ConfigError, DatasetError
from kdbench.results import canonical_json

DATA_SPLIT_KEYS = ("split", "train_split", "test_split", "support_split", "eval_split")
"""The keys of a dataset section that name a split its protocol reads."""


class PlanError(ConfigError):
    """Everything the planned units need that is missing or wrong, one problem a line."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) found before any unit started:\n{lines}")


def slug(text: str) -> str:
    """``text`` as one safe file-name part (``timm:vit_small`` -> ``timm_vit_small``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def spec_at(config: dict[str, Any], key: str | None) -> dict[str, Any] | None:
    """The section of ``config`` at the dotted ``key`` (``None`` if there is none)."""
    if key is None:
        return None
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def dataset_sections(config: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every section of ``config`` that names a dataset (has a ``dataset`` key), by dotted
    key. Sections that name none read the Shapes world."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in config.items():
        if not isinstance(value, dict):
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        if "dataset" in value:
            found[dotted] = value
        found.update(dataset_sections(value, dotted))
    return found


def loader_options(loader: Any) -> list[str]:
    """The keyword options a dataset loader takes besides ``root`` and ``split``."""
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return []
    return [n for n in params if n not in ("root", "split", "self")]


class _Manifests:
    """Split manifests, each read once per (dataset, root, split, options)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.known: dict[str, str | Exception] = {}

    def manifest(self, name: str, root: str, split: str, options: dict[str, Any]) -> str:
        key = canonical_json([name, root, split, options])
        if key not in self.known:
            try:
                loader = self.registry.get("datasets", name).load()
                self.known[key] = loader(root, split, **options).manifest_sha256
            except (DatasetError, ConfigError, OSError, TypeError, ValueError) as error:
                self.known[key] = error
        found = self.known[key]
        if isinstance(found, Exception):
            raise found
        return found


def _section_manifests(
    key: str, section: dict[str, Any], manifests: _Manifests, registry: Any
) -> tuple[str, list[str], list[str]]:
    """The dataset a section reads, the manifests of its splits, and its problems."""
    from kdbench.data.source import DataSource

    name = str(section["dataset"])
    problems: list[str] = []
    try:
        target = registry.get("datasets", name).load()
    except Exception as error:  # unknown dataset: the registry's message suggests names
        return name, [], [f"{key}.dataset: {error}"]
    if isinstance(target, DataSource):  # a generated world: no files to check
        return name, [], []
    options = dict(section.get("options") or {})
    known = loader_options(target)
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = ", ".join(known) or "no options"
        return name, [], [f"{key}.options: {name} takes {takes}; not {', '.join(unknown)}"]
    root = section.get("root")
    if not root:
        return name, [], [f"{key}.root: set the {name} folder: --set {key}.root=PATH"]
    found = []
    for split_key in DATA_SPLIT_KEYS:
        split = section.get(split_key)
        if split is None:
            continue
        try:
            found.append(manifests.manifest(name, str(root), str(split), options))
        except Exception as error:
            problems.append(f"{key} ({name}, {split_key} {split!r}): {error}")
    transfer = section.get("transfer_root")
    if transfer:
        try:
            found.append(manifests.manifest("imagefolder", str(transfer), "train", {}))
        except Exception as error:
            problems.append(f"{key}.transfer_root: {error}")
    return name, found, problems


def data_part(
    sections: dict[str, dict[str, Any]], manifests: _Manifests, registry: Any
) -> tuple[str | None, list[str]]:
    """The data folder name of a unit reading ``sections``, and the problems found."""
    names: list[str] = []
    digests: list[str] = []
    problems: list[str] = []
    files = False
    for key, section in sections.items():
        name, found, wrong = _section_manifests(key, section, manifests, registry)
        names.append(name)
        problems += wrong
        if found or wrong:
            files = True
        digests += found
    if not files or problems:
        return None, problems
    digest = hashlib.sha256("\n".join(digests).encode()).hexdigest()[:12]
    return f"{'+'.join(dict.fromkeys(slug(n) for n in names))}-{digest}", problems


def models_part(protocol: Any, config: dict[str, Any], default: dict[str, Any]) -> str | None:
    """The models folder name: the teacher and a hash of the teacher spec and the student's
    options, when either differs from ``default`` (the protocol's default config)."""
    teacher_key = getattr(protocol, "teacher_key", None)
    teacher, base_teacher = spec_at(config, teacher_key), spec_at(default, teacher_key)
    student_key = getattr(protocol, "student_key", None)
    student, base_student = spec_at(config, student_key), spec_at(default, student_key)
    options = (student or {}).get("options", {})
    default_options = (
        (base_student or {}).get("options", {})
        if student and base_student and student["name"] == base_student["name"]
        else {}
    )
    if teacher == base_teacher and options == default_options:
        return None
    digest = hashlib.sha256(canonical_json([teacher, options]).encode()).hexdigest()[:8]
    name = (teacher or {}).get("name", "models")
    return f"{slug(str(name).split(':', 1)[-1])}-{digest}"


def transfer_part(protocol: Any, config: dict[str, Any]) -> str | None:
    """The transfer-set folder name (``transfer-retrieved_by_student``) when the config
    names a transfer set for every method instead of each recipe's own."""
    key = getattr(protocol, "transfer_key", None)
    value = config.get(key) if key else None
    return f"transfer-{slug(str(value).replace(':', '_').replace('=', '_'))}" if value else None


def weights_problems(key: str, spec: dict[str, Any] | None) -> list[str]:
    """A weights file a model spec names that does not exist."""
    if not spec:
        return []
    options = spec.get("options") or {}
    problems = []
    for option in ("weights", "text_weights"):
        path = options.get(option)
        if isinstance(path, str) and path and not Path(path).is_file():
            problems.append(f"{key}.options.{option}: weights file {path} does not exist")
    return problems


def hub_problems(key: str, role: str, config: dict[str, Any]) -> list[str]:
    """The teacher at ``key`` needs hub weights, the hub is offline and they are not cached."""
    from kdbench.models.hub import OfflineWeightsError, require_timm_weights

    spec = spec_at(config, key.split(".", 1)[1])
    if not spec or not str(spec.get("name", "")).startswith("timm:"):
        return []
    options = spec.get("options") or {}
    if options.get("weights") or options.get("pretrained") is False:
        return []
    try:
        require_timm_weights(str(spec["name"]).removeprefix("timm:"))
    except OfflineWeightsError as error:
        return [f"{key}: {error.with_role(role)}"]
    return []


def place_units(units: Sequence[Any], registry: Any, device: str | None = None) -> list[Any]:
    """``units`` with their :attr:`place` worked out, after checking every dataset section
    and weights file they read; raises :class:`PlanError` listing every problem."""
    from kdbench.protocols.base import load_protocol
    from kdbench.subjects import subject_of

    manifests = _Manifests(registry)
    problems: list[str] = []
    placed = []
    machines: dict[tuple[str, str], str] = {}
    defaults: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for unit in units:
        proto = load_protocol(unit.protocol)
        sections = proto.data_sections(unit.config, subject_of(unit.method.load()))
        sections = {f"{proto.name}.{k}": v for k, v in sections.items()}
        data, wrong = data_part(sections, manifests, registry)
        for key in (proto.teacher_key, proto.student_key):
            if key is not None:
                wrong += weights_problems(f"{proto.name}.{key}", spec_at(unit.config, key))
        if proto.teacher_key is not None and not unit.config.get("random_if_missing"):
            wrong += hub_problems(f"{proto.name}.{proto.teacher_key}", "teacher", unit.config)
        problems += [p for p in wrong if p not in problems]
        index = (unit.protocol.name, unit.suite, unit.smoke)
        if index not in defaults:
            defaults[index] = proto.config(unit.suite, unit.smoke)
        parts = [
            data,
            models_part(proto, unit.config, defaults[index]),
            transfer_part(proto, unit.config),
        ]
        if device is not None:
            machine_key = (unit.protocol.name, canonical_json(unit.config))
            if machine_key not in machines:
                machines[machine_key] = proto.machine(unit.config, device) or ""
            parts.append(machines[machine_key] or None)
        placed.append(dataclasses.replace(unit, place=tuple(p for p in parts if p)))
    if problems:
        raise PlanError(problems)
    return placed


def with_spec(config: dict[str, Any], key: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with the model spec at the dotted ``key`` replaced by ``spec``."""
    config = copy.deepcopy(config)
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = copy.deepcopy(spec)
    return config


def merged_spec(spec: dict[str, Any], default: dict[str, Any] | None) -> dict[str, Any]:
    """``spec``, its options added to ``default``'s when both name the same model (so
    ``--teacher NAME:weights=PATH`` keeps the protocol's ``img_size``)."""
    if default is None or default.get("name") != spec["name"]:
        return copy.deepcopy(spec)
    return {"name": spec["name"], "options": {**default.get("options", {}), **spec["options"]}}


def parse_model_spec(text: str) -> dict[str, Any]:
    """``NAME[:key=value,...]`` -> ``{"name": NAME, "options": {...}}``; values are JSON
    when they parse (``img_size=518`` is an integer). The name may hold a colon
    (``timm:vit_small_patch14_dinov2.lvd142m:img_size=518``): options start at the first
    ``:`` followed by ``key=``."""
    import json

    match = re.search(r":(?=[A-Za-z_][A-Za-z0-9_]*=)", text)
    name, rest = (text[: match.start()], text[match.end() :]) if match else (text, "")
    if not name:
        raise ConfigError(
            f"{text!r}: expected NAME[:key=value,...], e.g. timm:resnet18:weights=r.pt"
        )
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"{text!r}: option {item!r} is not key=value (e.g. weights=w.safetensors)"
            )
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    return {"name": name, "options": options}

"""Confuser sources: the names of visually confusing classes that zero-shot one-class
classification scores an image against, next to the target's name.

A source is a plugin component (hook ``kdbench_register_confusers``). What is registered is
a *factory*, called once per unit with the dataset's label set and the source's options::

    source = factory(labels: LabelSet, **options)

and the object it returns meets :class:`ConfuserSource`: a ``name``, a ``version`` (both go
into the result record) and::

    source.confusers(target: str, candidates: Sequence[str], k: int, seed: int) -> list[str]

``candidates`` are every label name of the dataset except ``target``; the answer is at most
``k`` distinct names taken from them, most confusing first. Answers are checked: a name that
is not a candidate is refused with the names listed (plugin output is untrusted). A source
should be deterministic given ``(target, k, seed)``; randomness comes from
``kdbench.seeding.rng(seed, ...)``.

Built-in sources:

``frozen``
    a versioned JSON file mapping each class to its confusers (LLM answers are not
    reproducible, so they are frozen into a file). The Shapes world's file ships with
    kdbench (:mod:`kdbench.confusers.shapes`); other datasets pass ``file=PATH``.
``taxonomy``
    the target's nearest relatives in the dataset's taxonomy (a control).
``random``
    uniformly random other labels (a control).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kdbench.errors import ConfuserError, MissingTargetError
from kdbench.seeding import rng

FILE_FORMAT = "kdbench-confusers"
FILE_FORMAT_VERSION = 1
SHIPPED = Path(__file__).parent
"""Folder of the confuser files kdbench ships (``<dataset>-v<version>.json``)."""


@dataclass(frozen=True)
class LabelSet:
    """The label names of a dataset, and its taxonomy when it has one.

    ``lineages[i]`` is the path of ``names[i]`` from the taxonomy's top rank down to the
    class itself (coarse to fine), ``levels`` the rank names (same length).
    """

    dataset: str
    names: tuple[str, ...]
    lineages: tuple[tuple[str, ...], ...] | None = None
    levels: tuple[str, ...] | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if self.lineages is not None and len(self.lineages) != len(self.names):
            raise ValueError("a LabelSet needs one lineage per name")

    @property
    def has_taxonomy(self) -> bool:
        return self.lineages is not None


@runtime_checkable
class ConfuserSource(Protocol):
    """What a confuser factory returns."""

    name: str
    version: str

    def confusers(self, target: str, candidates: Sequence[str], k: int, seed: int) -> list[str]:
        """At most ``k`` names from ``candidates``, the most confusing first."""
        ...


class Candidates(Sequence[str]):
    """Every name of a label set but one, without copying the list (datasets with 10,000
    classes ask for confusers of every class)."""

    def __init__(self, names: Sequence[str], exclude: str, index: Mapping[str, int]) -> None:
        self._names = names
        self._exclude = exclude
        self._skip = index.get(exclude, len(names))
        self._index = index

    def __len__(self) -> int:
        return len(self._names) - (self._skip < len(self._names))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        return self._names[i + (i >= self._skip)]

    def __contains__(self, name: object) -> bool:
        return name != self._exclude and name in self._index


def _listing(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(str(n)[:80]) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_answer(
    source: str, target: str, answer: Any, candidates: Sequence[str] | set[str], k: int
) -> list[str]:
    """``answer`` as a list of at most ``k`` distinct candidate names, or a
    :class:`ConfuserError` that names the source and the offending names."""
    if isinstance(answer, str) or not isinstance(answer, Sequence):
        raise ConfuserError(
            f"confuser source {source!r} returned a {type(answer).__name__} for "
            f"{target!r}; it must return a list of label names"
        )
    allowed = candidates if isinstance(candidates, (set, Candidates)) else set(candidates)
    unknown = [a for a in answer if not isinstance(a, str) or a not in allowed]
    if unknown:
        raise ConfuserError(
            f"confuser source {source!r} named {len(unknown)} label(s) for {target!r} that "
            f"are not other classes of the dataset: {_listing(unknown)}"
        )
    if len(set(answer)) != len(answer):
        raise ConfuserError(f"confuser source {source!r} repeats names for {target!r}")
    if not answer:
        raise ConfuserError(f"confuser source {source!r} gave no confusers for {target!r}")
    return list(answer[:k])


# -- random ---------------------------------------------------------------------------------


class RandomConfusers:
    """``k`` other labels drawn uniformly at random (a control: no visual similarity)."""

    name = "random"
    version = "1"

    def __init__(self, labels: LabelSet) -> None:
        self.labels = labels

    def confusers(self, target: str, candidates: Sequence[str], k: int, seed: int) -> list[str]:
        pick = rng(seed, "confusers", "random", target).choice(
            len(candidates), size=min(k, len(candidates)), replace=False
        )
        return [candidates[i] for i in pick]


# -- taxonomy -------------------------------------------------------------------------------


class TaxonomyConfusers:
    """The target's nearest relatives in the taxonomy: classes sharing the deepest common
    ancestor first; where a rank holds more relatives than fit in ``k``, a seeded random
    subset of that rank (a control: confusable by construction, no language model)."""

    name = "taxonomy"
    version = "1"

    def __init__(self, labels: LabelSet) -> None:
        if not labels.has_taxonomy:
            raise ConfuserError(
                f"the taxonomy confuser source needs a dataset with a taxonomy, and "
                f"{labels.dataset!r} has none; use --set oneclass.confusers.source=frozen "
                "(with a file) or random"
            )
        self.labels = labels
        self._lineage = dict(zip(labels.names, labels.lineages or ()))
        # below[depth][lineage prefix of depth ranks] -> names under that ancestor
        depth_count = len(labels.levels or next(iter(self._lineage.values()), ()))
        self._below: list[dict[tuple[str, ...], list[str]]] = [{} for _ in range(depth_count)]
        for name, lineage in self._lineage.items():
            for depth in range(depth_count):
                self._below[depth].setdefault(tuple(lineage[:depth]), []).append(name)

    def confusers(self, target: str, candidates: Sequence[str], k: int, seed: int) -> list[str]:
        if target not in self._lineage:
            raise MissingTargetError(f"{target!r} is not a class of {self.labels.dataset!r}")
        mine = tuple(self._lineage[target])
        chosen: list[str] = []
        taken = {target}
        for depth in range(len(self._below) - 1, -1, -1):
            room = k - len(chosen)
            if room <= 0:
                break
            # relatives whose lowest common ancestor with the target is at this depth
            group = [
                n
                for n in self._below[depth].get(mine[:depth], [])
                if n not in taken and n in candidates
            ]
            if len(group) > room:
                pick = rng(seed, "confusers", "taxonomy", target, depth).choice(
                    len(group), size=room, replace=False
                )
                group = [group[i] for i in sorted(pick)]
            chosen += group
            taken.update(group)
        return chosen


# -- frozen ---------------------------------------------------------------------------------


def shipped_file(dataset: str, version: str | None = None) -> Path | None:
    """The confuser file kdbench ships for ``dataset`` (and dataset version), if any."""
    path = SHIPPED / f"{dataset}-v{version}.json" if version else SHIPPED / f"{dataset}.json"
    return path if path.is_file() else None


@dataclass(frozen=True)
class ConfuserFile:
    """A frozen confuser file, validated against a dataset's labels."""

    path: Path
    name: str
    version: str
    dataset: str
    confusers: Mapping[str, tuple[str, ...]]


def read_confuser_file(path: str | Path, labels: LabelSet) -> ConfuserFile:
    """Load a frozen confuser file and check every name in it against ``labels``.

    Format (JSON)::

        {"format": "kdbench-confusers", "format_version": 1,
         "name": "...", "version": "...", "dataset": "<dataset name>",
         "confusers": {"<class name>": ["<class name>", ...], ...}}

    Class names that ``labels`` does not have are refused, all of them listed.
    """
    path = Path(path)
    what = (
        f'a {FILE_FORMAT} JSON file: {{"format": "{FILE_FORMAT}", "format_version": 1, '
        '"name", "version", "dataset", "confusers": {class: [confusers, ...]}}'
    )
    if not path.is_file():
        raise ConfuserError(f"confuser file {path} does not exist; expected {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfuserError(f"{path} is not valid JSON ({error}); expected {what}") from None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise ConfuserError(f"{path} is not a confuser file; expected {what}")
    if data.get("format_version") != FILE_FORMAT_VERSION:
        raise ConfuserError(
            f"{path} has format_version {data.get('format_version')!r}; this kdbench reads "
            f"version {FILE_FORMAT_VERSION}"
        )
    missing = [key for key in ("name", "version", "dataset", "confusers") if key not in data]
    if missing:
        raise ConfuserError(f"{path} lacks the key(s) {', '.join(missing)}; expected {what}")
    if str(data["dataset"]) != labels.dataset:
        raise ConfuserError(
            f"{path} holds confusers for dataset {data['dataset']!r}, not {labels.dataset!r}"
        )
    table = data["confusers"]
    if not isinstance(table, dict) or not all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in table.values()
    ):
        raise ConfuserError(f"{path}: 'confusers' must map class names to lists of class names")
    known = set(labels.names)
    named = set(table) | {n for v in table.values() for n in v}
    unknown = sorted(named - known)
    if unknown:
        raise ConfuserError(
            f"{path} names {len(unknown)} class(es) that {labels.dataset!r} does not have: "
            f"{_listing(unknown)}. Fix the file or use the file made for this dataset version"
        )
    bad = sorted(t for t, v in table.items() if not v or t in v or len(set(v)) != len(v))
    if bad:
        raise ConfuserError(
            f"{path}: the confusers of {_listing(bad)} are empty, repeat a name or include "
            "the class itself"
        )
    return ConfuserFile(
        path=path,
        name=str(data["name"]),
        version=str(data["version"]),
        dataset=labels.dataset,
        confusers={t: tuple(v) for t, v in table.items()},
    )


def write_confuser_file(
    path: str | Path,
    confusers: Mapping[str, Sequence[str]],
    *,
    name: str,
    version: str,
    dataset: str,
    **extra: Any,
) -> Path:
    """Write ``confusers`` in the frozen-file format: header fields, then one line per
    target, targets sorted (small, reviewable diffs)."""
    from kdbench.atomic import atomic_write_text

    header = {
        "format": FILE_FORMAT,
        "format_version": FILE_FORMAT_VERSION,
        "name": name,
        "version": version,
        "dataset": dataset,
        **extra,
    }
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in header.items()]

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    entries = [f"  {dump(t)}: {dump(list(confusers[t]))}" for t in sorted(confusers)]
    text = "{\n" + "\n".join(lines) + '\n "confusers": {\n' + ",\n".join(entries) + "\n }\n}\n"
    path = Path(path)
    atomic_write_text(path, text)
    return path


class FrozenConfusers:
    """Confusers read from a versioned JSON file (see :func:`read_confuser_file`).

    ``file`` defaults to the file kdbench ships for the dataset (the Shapes world's); for
    other datasets pass the file, e.g. LLM answers frozen once and published with results.
    """

    name = "frozen"

    def __init__(self, labels: LabelSet, file: str | Path | None = None) -> None:
        path = Path(file) if file else shipped_file(labels.dataset, labels.version)
        if path is None:
            raise ConfuserError(
                f"kdbench ships no confuser file for {labels.dataset!r}; pass one with "
                "--set oneclass.confusers.options.file=PATH (format: docs/protocols/oneclass.md) "
                "or use --set oneclass.confusers.source=taxonomy or random"
            )
        self.file = read_confuser_file(path, labels)
        self.version = f"{self.file.name}@{self.file.version}"

    def confusers(self, target: str, candidates: Sequence[str], k: int, seed: int) -> list[str]:
        try:
            return list(self.file.confusers[target][:k])
        except KeyError:
            raise MissingTargetError(f"{self.file.path} has no confusers for {target!r}") from None

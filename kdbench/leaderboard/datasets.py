"""Which data and which teacher a record's numbers come from, so the site never ranks runs
on two datasets, or from two teachers, in one table.

A record names its data in ``dataset`` (a generated world's version, or the sha256 of the
split manifests of files on disk) and its teacher in ``components["teacher"]`` (name,
options and, since weights are fingerprinted, the sha256 of its tensors). Two records with
another dataset or another teacher are two units and land in two tables.
"""

from __future__ import annotations

from kdbench.results import Record, canonical_json


def dataset_key(record: Record) -> str:
    """``shapes@1`` for a generated world, ``cub:0123456789ab`` for files on disk (the
    manifest's sha256, 12 hex digits); ``""`` for a record without a dataset."""
    data = record.dataset
    if data is None:
        return ""
    if data.manifest_sha256:
        return f"{data.name}:{data.manifest_sha256[:12]}"
    return f"{data.name}@{data.version}"


def dataset_label(key: str) -> str:
    """A dataset key as a table heading says it: ``shapes v1``, ``cub (manifest 0123…)``."""
    if "@" in key:
        name, _, version = key.partition("@")
        return f"{name} v{version}"
    name, _, digest = key.partition(":")
    return f"{name} (manifest {digest[:8]})" if digest else name


def teacher_key(record: Record) -> str:
    """The teacher's identity: its name with its options and weights fingerprint, as
    canonical JSON; ``""`` when the record names no teacher."""
    teacher = record.components.get("teacher")
    if teacher is None:
        return ""
    options = dict(teacher.options)
    identity: dict[str, object] = {"name": teacher.name, "options": options}
    if teacher.weights is not None and teacher.weights.sha256:
        options.pop("weights", None)  # the same tensors under another path are the same teacher
        identity["weights"] = teacher.weights.sha256
    return canonical_json(identity)


def teacher_label(key: str) -> str:
    """A teacher key as a table heading says it: its name, and its options if any."""
    import json

    if not key:
        return ""
    identity = json.loads(key)
    options = identity.get("options") or {}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if k != "weights")
    name = str(identity.get("name", ""))
    weights = identity.get("weights")
    extra = [shown] if shown else []
    if weights:
        extra.append(f"weights {str(weights)[:8]}")
    return f"{name} ({'; '.join(extra)})" if extra else name

"""Which weights a teacher or student ran with: where they came from and the sha256 of
their tensors, for every model reference in a record.

A path says little (the same file name holds other weights on another machine); the
sha256 of the tensors (:func:`kdbench.cache.tensor_digest`: each name, dtype, shape and
bytes) says exactly which weights. Reading a large checkpoint takes seconds, so digests are
cached per file path, size and modification time.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdbench.cache import tensor_digest
from kdbench.errors import WeightsError
from kdbench.results import ComponentRef, WeightsRef

MODEL_ROLES = ("teacher", "student", "subject")
"""The component roles of a record that are models with weights."""

_memo: dict[tuple[str, int, int], str] = {}


def _cache_file() -> Path | None:
    try:
        from kdbench.cache import cache_dir

        return cache_dir() / "weights-sha256.json"
    except Exception:  # a cache that cannot be used only costs the time to hash again
        return None


def file_sha256(path: str | Path) -> str:
    """sha256 of the tensors in a weights file, cached per (path, size, mtime)."""
    from kdbench.models.backbone import read_state_dict

    resolved = Path(path).resolve()
    info = resolved.stat()
    key = (str(resolved), info.st_size, info.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    cache = _cache_file()
    table: dict[str, str] = {}
    if cache is not None and cache.is_file():
        try:
            table = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            table = {}
    text_key = "|".join(map(str, key))
    digest = table.get(text_key)
    if not isinstance(digest, str):
        state = read_state_dict(resolved)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        digest = tensor_digest(state)
        table[text_key] = digest
        if cache is not None:
            from kdbench.atomic import atomic_write_text

            with contextlib.suppress(OSError):  # an unwritable cache only costs time later
                atomic_write_text(cache, json.dumps(table, indent=0, sort_keys=True))
    _memo[key] = digest
    return digest


def _shipped_file(name: str) -> Path | None:
    """The Shapes world weights file a ``shapes-*`` model loads by default, if any."""
    from kdbench.world.models import find_weights

    candidates = [name.removeprefix("shapes-"), name]
    if name == "shapes-clip":
        candidates = ["teacher"]
    for candidate in candidates:
        try:
            return find_weights(candidate)
        except WeightsError:
            continue
    return None


def _hub_file(name: str, options: Mapping[str, Any]) -> Path | None:
    """The local hub-cache file of a ``timm:`` model's pretrained weights, if cached."""
    if not name.startswith("timm:"):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
        from timm.models import get_pretrained_cfg
    except ImportError:  # pragma: no cover
        return None
    cfg = get_pretrained_cfg(name.removeprefix("timm:"))
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    repo_id = "/".join(hub_id.split("/")[:2])
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def weights_of(name: str, options: Mapping[str, Any]) -> WeightsRef:
    """The weights a model ``name`` built with ``options`` loads (see the module's docstring)."""
    local = options.get("weights")
    if local is None and isinstance(options.get("pretrained"), str):
        text = str(options["pretrained"])
        if "/" in text or Path(text).suffix in (".pt", ".pth", ".bin", ".safetensors"):
            local = text  # an open_clip checkpoint file
    if local:
        path = Path(str(local))
        sha = file_sha256(path) if path.is_file() else None
        return WeightsRef(source="file", sha256=sha, path=str(path))
    if options.get("pretrained") in (False, None) and "pretrained" in options:
        return WeightsRef(source="random")
    if name.startswith("shapes-"):
        shipped = _shipped_file(name)
        return WeightsRef(source="shipped", sha256=file_sha256(shipped) if shipped else None)
    cached = _hub_file(name, options)
    return WeightsRef(source="hub", sha256=file_sha256(cached) if cached else None)


def with_weights(components: Mapping[str, ComponentRef]) -> dict[str, ComponentRef]:
    """``components`` with the weights of every model (:data:`MODEL_ROLES`) that does not
    say them yet. A file that cannot be read leaves the weights unrecorded (the unit that
    loaded it has already said why)."""
    out = dict(components)
    for role in MODEL_ROLES:
        ref = out.get(role)
        if ref is None or ref.weights is not None:
            continue
        try:
            weights = weights_of(ref.name, ref.options)
        except (OSError, ValueError, RuntimeError, WeightsError) as error:
            if os.environ.get("KDBENCH_DEBUG"):
                print(f"kdbench: weights of {role} {ref.name}: {error}", file=sys.stderr)
            continue
        out[role] = ref.model_copy(update={"weights": weights})
    return out


def declared_weights(suite: str, name: str) -> str | None:
    """The sha256 of the pretrained weights ``suite`` declares for the model ``name``, when
    it declares them: the embedded suite's Shapes foundation models ship with a manifest."""
    if suite != "embedded" or name not in ("shapes-teacher", "shapes-clip"):
        return None
    from kdbench.world.models import PACKAGED

    try:
        manifest = json.loads((PACKAGED / "manifest.json").read_text(encoding="utf-8"))
        return str(manifest["models"]["teacher"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

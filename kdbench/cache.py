"""Where kdbench keeps what it can recompute: world models, frozen features, episodes.

``KDBENCH_CACHE`` wins; otherwise ``$XDG_CACHE_HOME/kdbench``, else ``~/.cache/kdbench``.
Cached tensors are keyed by a hash of everything that determines them (backbone weights,
preprocessing, dataset identity) and written atomically, so a crash never leaves a bad entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdbench.atomic import atomic_save


def cache_dir() -> Path:
    """The cache root (created on demand)."""
    env = os.environ.get("KDBENCH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "kdbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_key(*parts: Any) -> str:
    """A stable sha256 of JSON-able parts (use :func:`tensor_digest` for weights)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def tensor_digest(state: Any) -> str:
    """sha256 over a module's or a state dict's tensors (names, dtypes, shapes, bytes)."""
    import torch

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cached_tensors(
    folder: str,
    key: str,
    compute: Callable[[], dict[str, Any]],
    root: Path | None = None,
) -> tuple[dict[str, Any], bool]:
    """Load ``{name: tensor}`` from the cache or compute and store it.

    Returns the tensors and whether they came from the cache.
    """
    from safetensors.torch import load_file, save_file

    path = (root or cache_dir()) / folder / f"{key}.safetensors"
    if path.exists():
        try:
            return load_file(str(path)), True
        except Exception:  # a corrupt entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    tensors = compute()
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_save(path, lambda tmp: save_file(contiguous, tmp))
    return contiguous, False


def load_module_state(module: Any, folder: Path, key: str) -> dict[str, Any] | None:
    """Load a module's weights cached under ``key`` and return the metadata stored with
    them, or ``None`` when nothing (or something unreadable) is cached."""
    import json

    from safetensors.torch import load_file

    weights, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    if not (weights.exists() and meta.exists()):
        return None
    try:
        module.load_state_dict(load_file(str(weights)))
        return json.loads(meta.read_text())
    except Exception:  # a corrupt or stale entry is retrained, never trusted
        return None


def save_module_state(module: Any, folder: Path, key: str, meta: dict[str, Any]) -> None:
    """Cache a module's weights and ``meta`` under ``key`` (both written atomically)."""
    import json

    from safetensors.torch import save_file

    from kdbench.atomic import atomic_write_text

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_save(folder / f"{key}.safetensors", lambda tmp: save_file(state, tmp))
    atomic_write_text(folder / f"{key}.json", json.dumps(meta))

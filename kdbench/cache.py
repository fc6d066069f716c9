"""Where kdbench keeps what it can recompute: trained stages, frozen features, episodes.

``KDBENCH_CACHE`` wins; otherwise ``$XDG_CACHE_HOME/kdbench``, else ``~/.cache/kdbench``.

An entry is keyed by a hash of everything that determines it (backbone weights,
preprocessing, dataset identity and, for what a model computed or trained, the
:func:`numerics` it ran with) and is two files:

- ``<key>.safetensors``, the payload: the tensors, with the entry's metadata (a JSON object,
  such as a stage's training time) in the safetensors header;
- ``<key>.json``, the integrity record: ``{"format": ..., "sha256": ..., "bytes": ...}``,
  the sha256 and size of the whole payload file.

Both are written atomically, payload first. Jobs running side by side (``kdbench run
--executor local`` or ``slurm``) share the cache: :func:`entry_lock` holds an exclusive file
lock on ``<key>.lock`` while an entry is looked up and, when missing, computed and written,
so no two jobs compute the same entry and none reads one that is half-written.

On load, the payload's sha256 is checked against the integrity record *before* anything is
parsed or put into a model. A missing, unreadable or mismatched file makes the entry
damaged: kdbench warns, and the caller recomputes it from scratch (never from the damaged
data) and writes it over the damaged one. So a damaged cache costs time, never different
results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kdbench.atomic import atomic_write_bytes, atomic_write_text
from kdbench.errors import CacheError
from kdbench.phases import in_phase

try:
    import fcntl
except ImportError:  # not POSIX: entries are still written atomically, only not locked
    fcntl = None  # type: ignore[assignment]

ENTRY_FORMAT = "kdbench-cache-entry/1"
_META_KEY = "kdbench.meta"


def cache_dir() -> Path:
    """The cache root (created on demand); a :class:`CacheError` when it cannot be."""
    env = os.environ.get("KDBENCH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "kdbench"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        why = "a file is in the way" if isinstance(error, FileExistsError) else error.strerror
        raise CacheError(
            f"cannot use {root} as the kdbench cache folder ({why or error}); point "
            "KDBENCH_CACHE at a folder you can write to"
        ) from None
    return root


def cache_key(*parts: Any) -> str:
    """A stable sha256 of JSON-able parts (use :func:`tensor_digest` for weights)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def numerics(device: Any = "cpu") -> dict[str, Any]:
    """What a model's floating-point results depend on besides its inputs: the torch
    version, the device (a GPU by its name) and, on a CPU, torch's intra-op thread count,
    since threads split reductions differently and training amplifies the last bits.

    It is part of the key of every cached entry a model trained or computed, so a cached
    student, teacher or feature bank is exactly what this run would have computed (a
    student trained on one thread is never reused by a run on two, whose record says two).
    """
    import torch

    device = torch.device(device)
    out: dict[str, Any] = {"torch": torch.__version__, "device": device.type}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        out["threads"] = torch.get_num_threads()
    return out


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


def _warn(message: str) -> None:
    print(f"kdbench: warning: {message}", file=sys.stderr)


class _Damaged(Exception):
    """A cache entry that failed its integrity check (the message says how)."""


_HELD: set[Path] = set()  # locks this process holds (a nested request for one is a no-op)


def _ranks() -> tuple[int, int]:
    """(rank, world size) of this process under ``torch.distributed``; (0, 1) otherwise."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def entry_lock(folder: Path, key: str) -> Iterator[None]:
    """Hold the cache entry ``key`` of ``folder`` for the block: look it up, and compute and
    write it when it is missing, inside the block. Other processes asking for the same
    entry wait until the block ends, then find it written.

    Under ``torch.distributed`` the ranks of one unit work in lockstep: rank 0 takes the
    lock, every rank waits at a barrier until it holds it (and again at the end), and only
    rank 0 writes entries. A filesystem without ``flock`` (rare) runs unlocked, with a
    warning; so does a system without ``fcntl`` (Windows).
    """
    path = folder / f"{key}.lock"
    rank, world = _ranks()
    if path in _HELD:
        yield
        return
    handle = None
    if rank == 0 and fcntl is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a")  # noqa: SIM115 (held until the block ends)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError as error:
            _warn(f"cannot lock the cache entry {path} ({error}); going on without the lock")
            if handle is not None:
                handle.close()
            handle = None
    if world > 1:
        sys.modules["torch"].distributed.barrier()
    _HELD.add(path)
    try:
        yield
    finally:
        _HELD.discard(path)
        if world > 1:
            sys.modules["torch"].distributed.barrier()
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()


def _entry_paths(folder: Path, key: str) -> tuple[Path, Path]:
    return folder / f"{key}.safetensors", folder / f"{key}.json"


def _verified(payload: Path, record: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load

    try:
        info = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _Damaged(f"its integrity record {record.name} cannot be read: {error}") from None
    if not (
        isinstance(info, dict)
        and info.get("format") == ENTRY_FORMAT
        and isinstance(info.get("sha256"), str)
    ):
        raise _Damaged(f"{record.name} is not a kdbench cache integrity record")
    try:
        data = payload.read_bytes()
    except OSError as error:
        raise _Damaged(f"{payload.name} cannot be read: {error}") from None
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise _Damaged(f"{payload.name} does not match the sha256 in {record.name}")
    try:  # the bytes are the ones written, so this only fails on a kdbench bug
        tensors = load(data)
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        meta = json.loads((header.get("__metadata__") or {}).get(_META_KEY, "{}"))
    except Exception as error:
        raise _Damaged(f"{payload.name} cannot be parsed: {error}") from None
    return tensors, meta if isinstance(meta, dict) else {}


def read_entry(folder: Path, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The tensors and metadata cached under ``key`` in ``folder``, verified; ``None`` when
    there is no entry or a damaged one (reported; writing the recomputed entry replaces it)."""
    payload, record = _entry_paths(folder, key)
    if not payload.exists() and not record.exists():
        return None
    try:
        return _verified(payload, record)
    except _Damaged as damage:
        _warn(f"cache entry {payload} is damaged ({damage}); it is recomputed")
        return None


@in_phase("writing")
def write_entry(
    folder: Path, key: str, tensors: dict[str, Any], meta: dict[str, Any] | None = None
) -> None:
    """Cache ``tensors`` (moved to the CPU) and the JSON-able ``meta`` under ``key``.

    A cache that cannot be written (read-only, full disk) is reported, not fatal: the caller
    already has what it computed. Under ``torch.distributed`` only rank 0 writes.
    """
    from safetensors.torch import save

    if _ranks()[0] != 0:
        return
    state = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    data = save(state, metadata={_META_KEY: json.dumps(meta or {}, sort_keys=True)})
    info = {"format": ENTRY_FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    payload, record = _entry_paths(folder, key)
    try:
        atomic_write_bytes(payload, data)
        atomic_write_text(record, json.dumps(info))
    except OSError as error:
        _warn(f"cannot write the cache entry {payload} ({error}); going on without it")


def cached_tensors(
    folder: str,
    key: str,
    compute: Callable[[], dict[str, Any]],
    root: Path | None = None,
) -> tuple[dict[str, Any], bool]:
    """Load ``{name: tensor}`` from the cache, or compute, store and return it (on the CPU).

    Returns the tensors and whether they came from the cache.
    """
    where = (root or cache_dir()) / folder
    with entry_lock(where, key):
        entry = read_entry(where, key)
        if entry is not None:
            return entry[0], True
        tensors = {name: t.detach().cpu().contiguous() for name, t in compute().items()}
        write_entry(where, key, tensors)
    return tensors, False


def load_module_state(module: Any, folder: Path, key: str) -> dict[str, Any] | None:
    """Load a module's weights cached under ``key`` and return the metadata stored with
    them, or ``None`` (module untouched) when nothing usable is cached.

    The entry is verified, and its tensor names and shapes checked against the module,
    before any weight goes into it: a damaged entry never leaves the module half-loaded.
    """
    entry = read_entry(folder, key)
    if entry is None:
        return None
    state, meta = entry
    expected = module.state_dict()
    if set(state) != set(expected) or any(
        tuple(state[name].shape) != tuple(t.shape) for name, t in expected.items()
    ):
        _warn(f"cache entry {folder / key}.safetensors does not fit the model; it is recomputed")
        return None
    module.load_state_dict(state)
    return meta


@in_phase("writing")
def save_module_state(module: Any, folder: Path, key: str, meta: dict[str, Any]) -> None:
    """Cache a module's weights with ``meta`` (JSON-able) under ``key``."""
    write_entry(folder, key, module.state_dict(), meta)

"""Runtime questions, asked one way: which device a run uses, whether this process is the one
that writes (rank 0 under ``torchrun``), and how progress is shown.

A ``--device`` is checked here before any work: only a device that exists on this machine is
accepted, so a mistyped or absent one is a one-line error and never reaches a record.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

from kdbench.errors import ConfigError

_CUDA = re.compile(r"cuda(?::(\d+))?")


def _available_devices() -> list[str]:
    """The device names this machine can run on, for error messages."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names += ["cuda", *(f"cuda:{i}" for i in range(count))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(device: str) -> str:
    """The torch device a run uses: ``auto`` is CUDA when available, else the CPU; ``cpu``,
    ``cuda``, ``cuda:N`` and ``mps`` are accepted only where they exist (a
    :class:`~kdbench.errors.ConfigError` names the devices this machine has otherwise)."""
    wanted = device.strip().lower()
    if wanted == "cpu":
        return wanted
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = None
    match = _CUDA.fullmatch(wanted)
    if match is not None:
        if not torch.cuda.is_available():
            problem = "CUDA is not available on this machine"
        elif match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
            problem = f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    elif wanted == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            problem = "MPS (Apple GPU) is not available on this machine"
    else:
        problem = "not a device name"
    if problem is None:
        return wanted
    raise ConfigError(
        f"--device {device!r}: {problem}; use one of: {', '.join(_available_devices())}"
    )


def is_main_process() -> bool:
    """False on ranks other than 0 under ``torchrun``; only rank 0 writes."""
    return int(os.environ.get("RANK", "0")) == 0


def bars_shown(enabled: bool | None) -> bool:
    """Whether progress bars are drawn: as asked, else only when stderr is a terminal (never
    on ranks other than 0)."""
    if not is_main_process():
        return False
    if enabled is not None:
        return enabled
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def make_progress(enabled: bool | None) -> Callable[..., Any]:
    """A tqdm factory; ``enabled=None`` shows bars only on a terminal."""
    from tqdm.auto import tqdm

    disable = not bars_shown(enabled)

    def progress(iterable: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("leave", False)
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, disable=disable, file=sys.stderr, **kwargs)

    return progress


def verbose() -> bool:
    """Whether third-party libraries' INFO logs are shown (``kdbench -v``, or
    ``KDBENCH_VERBOSE=1``); otherwise kdbench keeps them out of its output."""
    return os.environ.get("KDBENCH_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


def set_verbose(on: bool) -> None:
    """Show third-party INFO logs (``kdbench -v``): the root logger logs INFO to stderr."""
    if on:
        import logging

        os.environ["KDBENCH_VERBOSE"] = "1"
        logging.basicConfig(level=logging.INFO)

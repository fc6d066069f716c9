"""Provenance captured once per process and put in every record: kdbench version and git
state, library versions, devices and CPU."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from kdbench import __version__
from kdbench.workers import usable_cpus


def _run_git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def kdbench_info() -> dict[str, Any]:
    """kdbench's version and, when it runs from a git checkout, the commit and dirty flag."""
    source = Path(__file__).resolve().parent
    top = _run_git(["rev-parse", "--show-toplevel"], source)
    sha = dirty = None
    if top and (Path(top) / "kdbench" / "__init__.py").exists():
        sha = _run_git(["rev-parse", "HEAD"], source)
        status = _run_git(["status", "--porcelain", "--untracked-files=no"], source)
        dirty = None if status is None else bool(status)
    return {"version": __version__, "git_sha": sha or None, "git_dirty": dirty}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _nvidia_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None
    return driver.decode() if isinstance(driver, bytes) else str(driver)


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Python, library versions, accelerator and CPU of this process."""
    import torch

    cuda = torch.cuda.is_available()
    devices = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    )
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "numpy": _version("numpy"),
        "cuda": torch.version.cuda if cuda else None,
        "devices": devices or ["cpu"],
        "driver": _nvidia_driver() if cuda else None,
        "cpu": cpu_model(),
        "cpu_count": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "eval_batch_size": _eval_batch_size(),
        "determinism": determinism_flags(),
    }


def _eval_batch_size() -> int:
    from kdbench.train import EVAL_BATCH_SIZE

    return EVAL_BATCH_SIZE


def determinism_flags() -> dict[str, Any]:
    """The PyTorch settings that decide whether a run repeats bit for bit."""
    import torch

    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def execution(
    executor: str = "inline",
    *,
    job_id: str | None = None,
    array_index: int | None = None,
    attempt: int = 1,
) -> dict[str, Any]:
    """How this process runs its units: the executor, the job and the host. A job id not
    given is read from Slurm's environment, so ``kdbench run --shard i/n`` inside a
    hand-made Slurm array records its job too."""
    import os
    import socket

    if job_id is None:
        job_id = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
        task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
        if array_index is None and task.isdigit():
            array_index = int(task)
        if job_id and array_index is not None:
            job_id = f"{job_id}_{array_index}"
    return {
        "executor": executor,
        "job_id": job_id,
        "array_index": array_index,
        "host": socket.gethostname() or None,
        "attempt": attempt,
    }

"""How many threads a measurement uses: pinned for its duration, restored afterwards."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def available_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _cgroup_cpu_limit(cgroup: Path) -> int | None:
    """The CPU quota of a cgroup v2 container (``cpu.max``), rounded up; None if unlimited."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def physical_cores_available(
    sys_cpu: Path = Path("/sys/devices/system/cpu"), cgroup: Path = Path("/sys/fs/cgroup")
) -> int:
    """Physical cores among the CPUs this process may use (hyper-threads counted once),
    capped by a container's CPU quota."""
    cpus = available_cpus()
    cores = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            cores = set(range(len(cpus)))  # no topology: count logical CPUs
            break
        cores.add((package, core))
    count = max(1, len(cores))
    limit = _cgroup_cpu_limit(cgroup)
    return min(count, limit) if limit else count


@contextmanager
def pinned_threads(threads: int) -> Iterator[int]:
    """``torch.set_num_threads(threads)`` for the block, then the previous value again."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)

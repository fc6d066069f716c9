"""Start-up time of the command line, side by side with the plain interpreter and with an
interpreter that imports torch: `kdbench --version`, `--help` and `ls` should cost about
what Python itself does, not what torch does.

    python -m pytest benchmarks/bench_cli.py --benchmark-only --benchmark-group-by=group

`ls` runs with KDBENCH_LOAD_PLUGINS="" (built-ins only): an installed plugin that imports
torch at import time would otherwise set the figure (plugins should register by import
path; see docs/plugins.md).
"""

import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "KDBENCH_LOAD_PLUGINS": ""}
CLI = [sys.executable, "-m", "kdbench"]


def _run(args):
    subprocess.run(args, check=True, env=ENV, stdout=subprocess.DEVNULL)


@pytest.mark.benchmark(group="cli start-up")
@pytest.mark.parametrize(
    "name,args",
    [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
        ("kdbench --version", [*CLI, "--version"]),
        ("kdbench --help", [*CLI, "--help"]),
        ("kdbench ls", [*CLI, "ls"]),
    ],
)
def test_start_up(benchmark, name, args):
    benchmark.pedantic(_run, args=(args,), rounds=5, warmup_rounds=1)

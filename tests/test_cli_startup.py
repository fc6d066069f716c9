"""`kdbench --version`, `--help` and `ls` import no torch (the timings are in
benchmarks/bench_cli.py; this checks the property behind them)."""

import os
import subprocess
import sys

import pytest

CHECK = """
import sys
from typer.testing import CliRunner
from kdbench.cli import app
result = CliRunner().invoke(app, {args!r})
assert result.exit_code == 0, result.output
heavy = sorted(m for m in ("torch", "numpy", "pandas", "timm") if m in sys.modules)
assert not heavy, f"imported {{heavy}}"
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["ls"], ["ls", "methods"]])
def test_start_up_commands_import_no_torch(args):
    env = {**os.environ, "KDBENCH_LOAD_PLUGINS": ""}
    subprocess.run([sys.executable, "-c", CHECK.format(args=args)], check=True, env=env)

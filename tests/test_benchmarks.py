"""The benchmarks run on request only, so nothing else would notice one that no longer
imports: every file in ``benchmarks/`` must still be collected."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_file_is_collected():
    files = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert files, "no benchmark files found"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "benchmarks"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = {
        line.split("::")[0].removeprefix("benchmarks/") for line in done.stdout.splitlines()
    }
    assert set(files) <= collected, sorted(set(files) - collected)
